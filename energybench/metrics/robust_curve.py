"""robust-curve: PGD-20 accuracy against the attack budget (a grid of eps), the normalised area
under that curve (the mean robust accuracy over the budgets, with a bootstrap standard error over
images), and its figure.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np
import torch

from energybench.attacks import diagnostics
from energybench.attacks.pgd import BUDGET_RANGE, NORMS, PGDConfig
from energybench.core.atomic import write_npz_atomic
from energybench.core.validation import Checked, RangeError, check_value
from energybench.metrics.base import EvalContext, Metric, MetricResult, binomial_stderr, register_metric
from energybench.metrics.robust_curve_figure import robust_curve
from energybench.metrics.robustness import checks_record, run_pgd
from energybench.records.text import budget_text

DEFAULT_GRIDS = {"Linf": tuple(e / 255 for e in (0, 1, 2, 3, 4, 6, 8, 10, 12, 16)),
                 "L2": (0.0, 0.125, 0.25, 0.375, 0.5, 0.75, 1.0)}


@dataclass(frozen=True)
class CurveParams(Checked):
    LIMITS = {"steps": "[1, 10000]", "step_ratio": "(0, 1]"}
    CHOICES = {"objective": ("ce", "energy"), "norm": NORMS}
    IMPLICIT: ClassVar[dict] = {"norm": "Linf"}  # as PGDConfig's

    eps_grid: tuple[float, ...] | None = None  # None: the norm's grid (0 to 16/255 L-inf, 0 to 1 L2)
    steps: int = 20
    step_ratio: float = 0.25  # step = ratio * eps (2/255 at 8/255)
    objective: str = "ce"
    norm: str = "Linf"

    def __post_init__(self):
        if self.norm in NORMS:
            if self.eps_grid is None:
                object.__setattr__(self, "eps_grid", DEFAULT_GRIDS[self.norm])
            for eps in self.eps_grid:
                check_value("eps_grid", eps, "[0" + BUDGET_RANGE[self.norm][2:])
        super().__post_init__()
        if len(set(self.eps_grid)) < 2:
            raise RangeError("eps_grid", "needs at least two budgets, e.g. 0,4/255,8/255")

    def gradient_passes(self, n: int, num_classes: int) -> float:
        """PGD (with its clean and final forwards) at every non-zero budget of the grid; one forward at 0."""
        attacked = sum(1 for eps in set(self.eps_grid) if eps > 0)
        return n * (attacked * (self.steps + 2 / 3) + (1 / 3 if 0 in self.eps_grid else 0))


def _merge(checks: dict, run_checks, eps: float) -> None:
    """Keep each always-on check once: the first raised one (with the eps it was raised at)."""
    for check in run_checks:
        kept = checks.get(check.name)
        if kept is None or (check.flag and not kept.flag):
            checks[check.name] = replace(check, evidence={**check.evidence, "at_eps": eps})


def _budget_points(grid, accuracy, stderr, norm: str = "Linf") -> list[dict]:
    """Each budget's accuracy must not exceed the next smaller budget's (within one stderr)."""
    labels = [f"eps {budget_text(e, norm)}" for e in grid]
    return [{"label": label, "value": a, "stderr": s, "weaker_than": labels[i - 1] if i else None}
            for i, (label, a, s) in enumerate(zip(labels, accuracy, stderr))]


def normalised_area(grid, accuracy) -> float:
    """Mean accuracy over [min eps, max eps] by the trapezoid rule."""
    area = sum((b - a) * (fa + fb) / 2 for a, b, fa, fb in zip(grid, grid[1:], accuracy, accuracy[1:]))
    return area / (grid[-1] - grid[0])


BOOTSTRAP_RESAMPLES = 2000


def bootstrap_area_stderr(grid, correct: np.ndarray, seed: int, resamples: int = BOOTSTRAP_RESAMPLES) -> float:
    """The standard error of `normalised_area` over images: correct (N, len(grid)) bool, whether
    each image is classified right at each budget; the areas of `resamples` resamples of the N
    images with replacement (drawn from `seed`), their standard deviation. The area is linear in
    the per-budget accuracies, so each resample's area is the mean of the images' own areas."""
    grid = np.asarray(grid, dtype=np.float64)
    weights = np.diff(grid)
    right = np.asarray(correct, dtype=np.float64)  # bool + bool would be a logical or
    per_image = ((right[:, 1:] + right[:, :-1]) * weights).sum(1) / 2 / (grid[-1] - grid[0])
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(per_image), size=(resamples, len(per_image)))
    return float(per_image[draws].mean(1).std(ddof=1))


@torch.no_grad()
def clean_flags(ctx: EvalContext) -> np.ndarray:
    """Whether each test image is classified right, (N,) bool."""
    return np.concatenate([(ctx.model(x).argmax(1) == y).cpu().numpy() for x, y, _ in ctx.batches()])


@register_metric
class RobustCurve(Metric):
    """PGD accuracy at each eps of a grid (eps 0 is clean accuracy; step = step_ratio * eps).
    value: the normalised area under the curve, i.e. the mean robust accuracy over [0, max eps]
    (trapezoid rule), in [0, 1]; stderr: its bootstrap standard error over the test images. The
    record's extra and raw data hold every point with its standard error."""

    name = "robust-curve"
    draw = staticmethod(robust_curve)
    summary = ("area under the PGD-20 robustness curve: mean robust accuracy over eps from 0 to 16/255 "
               "(L2: 0 to 1), bootstrap standard error over images; and its figure")
    summary_head = "area under the PGD-20 robustness curve"
    unit = "area"
    version = 2  # 2: a bootstrap standard error over images (1: none)
    Params = CurveParams
    norms = NORMS

    def compute(self, ctx: EvalContext) -> MetricResult:
        p = self.params
        grid = sorted(set(p.eps_grid))
        correct, checks = [], {}
        for eps in grid:
            if eps == 0:
                correct.append(clean_flags(ctx))
                continue
            cfg = PGDConfig(eps=eps, step_size=p.step_ratio * eps, steps=p.steps, objective=p.objective,
                            norm=p.norm)
            run = run_pgd(ctx, cfg, f"{self.name} {budget_text(eps, p.norm)}")
            correct.append(np.asarray(run.outcomes["robust"], dtype=bool))
            _merge(checks, run.checks, eps)
        correct = np.stack(correct, 1)  # (N, budgets)
        n = len(ctx.data)
        accuracy = [float(a) for a in correct.mean(0)]
        stderr = [binomial_stderr(a, n) for a in accuracy]
        checks["budget_monotone"] = diagnostics.budget_monotone(_budget_points(grid, accuracy, stderr, p.norm))
        raw = ctx.artifact("npz")
        write_npz_atomic(raw, eps=np.array(grid), accuracy=np.array(accuracy), stderr=np.array(stderr))
        return MetricResult(normalised_area(grid, accuracy), n, bootstrap_area_stderr(grid, correct, ctx.seed),
                            {"eps": grid, "accuracy": accuracy, "stderr": stderr, "raw": raw.name,
                             "spread": f"bootstrap over images, {BOOTSTRAP_RESAMPLES} resamples",
                             **({"norm": p.norm} if p.norm != "Linf" else {})},
                            checks_record(checks.values()))
