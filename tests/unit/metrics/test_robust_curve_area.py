"""robust-curve's number is an area under an accuracy curve with a spread that fits it: the
bootstrap standard error over images, checked against scipy's bootstrap of each image's own
trapezoid area (numpy's), and its protocol text says the norm and the grid."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import bootstrap

from energybench.metrics.robust_curve import bootstrap_area_stderr, normalised_area
from energybench.records.text import format_summary, protocol_text

pytestmark = pytest.mark.synthetic


def test_the_area_and_its_bootstrap_error_match_independent_references():
    rng = np.random.default_rng(0)
    grid = np.array([0, 1, 2, 4, 8, 16]) / 255
    # images robust up to a random budget: monotone rows, as a real curve's
    breaks = rng.integers(0, len(grid) + 1, size=300)
    correct = np.arange(len(grid))[None, :] < breaks[:, None]
    area = normalised_area(list(grid), list(correct.mean(0)))
    per_image = np.trapezoid(correct.astype(float), grid, axis=1) / grid[-1]
    assert area == pytest.approx(per_image.mean())
    ours = bootstrap_area_stderr(grid, correct, seed=0)
    reference = bootstrap((per_image,), np.mean, n_resamples=4000, method="percentile",
                          random_state=np.random.default_rng(1)).standard_error
    assert ours == pytest.approx(reference, rel=0.08)
    assert ours == pytest.approx(per_image.std(ddof=1) / np.sqrt(len(per_image)), rel=0.08)


def test_the_summary_shows_an_area_with_its_grid_not_a_percentage_with_a_wilson_interval():
    record = {"metric": "robust-curve", "unit": "area", "value": 0.41234, "stderr": 0.0213, "n": 4,
              "params": {"eps_grid": [0, 0.25, 0.5, 1.0], "steps": 20, "step_ratio": 0.25,
                         "objective": "ce", "norm": "L2"},
              "changed_params": {"norm": "L2"}, "wall_seconds": 1.0}
    row = format_summary([record]).splitlines()[2]
    assert "| 0.4123 | 0.021 |" in row and "%" not in row and "CI" not in row, row
    assert protocol_text(record) == "L2 eps 0 to 1 (4 budgets), step 0.25 eps"
