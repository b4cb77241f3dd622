"""Figures redrawable from raw data: PNG and PDF at 300 dpi, titles that name file, data and
counts, comparison panels, round contour levels, Wilson error bars."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from testkit import CLASSES, seeded_model, synthetic_npz

import energybench

pytestmark = pytest.mark.synthetic


@pytest.fixture(scope="module")
def figure_records(tmp_path_factory):
    """energy-hist, energy-contour and memorization of a module, with in-memory training data."""
    root = tmp_path_factory.mktemp("figs")
    data = synthetic_npz(root / "synth.npz")
    records = energybench.evaluate(
        seeded_model(), str(data), metrics=["energy-hist", "energy-contour", "memorization"], n=20,
        train_data=str(data), out_dir=root / "eval", device="cpu", n_per_class=2, steps=3, k=3,
        figure_rows=4, images=2, grid=5)
    return root / "eval", records


def test_figures_are_drawn_as_png_and_pdf_at_300_dpi(figure_records):
    from PIL import Image

    folder, records = figure_records
    for record in records:
        png = folder / record["extra"]["figure"]
        assert png.exists() and png.with_suffix(".pdf").exists()
        with Image.open(png) as image:
            assert round(image.info["dpi"][0]) == 300


def test_plot_redraws_figures_from_raw_data_only(figure_records, run_cli, tmp_path):
    folder, records = figure_records
    before = {p.name: p.read_bytes() for p in folder.glob("*.json")}
    drawn = {p.name: p.read_bytes() for p in [*folder.glob("*.png"), *folder.glob("*.pdf")]}
    for figure in drawn:
        (folder / figure).unlink()
    code, out, err = run_cli("plot", str(folder))
    assert code == 0, err
    assert sorted(p.name for p in folder.glob("*.png")) == sorted(r["extra"]["figure"] for r in records)
    # the same pictures, byte for byte (no dates in the PDFs)
    assert {p.name: p.read_bytes() for p in [*folder.glob("*.png"), *folder.glob("*.pdf")]} == drawn
    assert {p.name: p.read_bytes() for p in folder.glob("*.json")} == before  # nothing recomputed
    code, out, err = run_cli("plot", records[0]["file"], "--out", str(tmp_path / "svg"), "--format", "svg")
    assert code == 0 and (tmp_path / "svg" / (f"{records[0]['file'].rsplit('/', 1)[1][:-5]}.svg")).exists()
    code, _, err = run_cli("plot", str(tmp_path / "nothing.json"))
    assert code == 2 and "does not exist" in err


def test_memorization_raw_data_holds_what_its_figure_shows(figure_records):
    folder, records = figure_records
    (record,) = [r for r in records if r["metric"] == "memorization"]
    with np.load(folder / record["extra"]["raw"]) as raw:
        assert raw["figure_samples"].shape == (4, 3, 32, 32) and raw["figure_samples"].dtype == np.uint8
        assert raw["figure_neighbours"].shape == (4, 3, 3, 32, 32)
        assert list(raw["classes"]) == CLASSES
        # the figure's SSIM values are the neighbour search's own
        rows = torch.linspace(0, len(raw["ssim"]) - 1, 4).long().numpy()  # spread over the classes
        assert np.array_equal(raw["figure_ssim"], raw["ssim"][rows])
        assert np.array_equal(raw["figure_labels"], raw["sample_labels"][rows])


def _hist_raw(seed, shift):
    rng = np.random.default_rng(seed)
    return {"clean": rng.normal(shift, 1, 50), "adversarial": rng.normal(shift + 1, 1, 50),
            "generated": rng.normal(shift - 2, 1, 20)}


def test_figure_titles_name_the_file_the_data_and_the_counts(figure_records):
    from energybench.metrics.landscape_figures import energy_hist
    from energybench.records.figures import model_label, read_raw

    folder, records = figure_records
    (record,) = [r for r in records if r["metric"] == "energy-hist"]
    figure = energy_hist(record, read_raw(Path(record["file"]), record))
    title = figure.axes[0].get_title()
    assert record["data"]["label"] in title and "20 test images, 20 SGLD samples" in title, title
    legend = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    assert "thin vertical lines: the means" in legend
    run = {"recipe": "jeat", "model": {"name": "wrn"}, "checkpoint": {"which": "last"}}
    assert model_label({"model": {**run, "path": "/x/runs/jeat-s1/last.pt"}}) == "jeat (wrn, jeat-s1/last.pt)"
    assert model_label({"model": {**run, "path": "/x/checkpoints/jeat-smoke.pt"}}) == "jeat (wrn, jeat-smoke.pt)"


def test_comparison_panels_in_natural_order_with_an_optional_shared_axis():
    from energybench.reporting.plotting import hist_comparison

    record = {"params": {"eps": 8 / 255}, "data": {"label": "CIFAR-10 (JPEG q75 copy)"}}
    panels = {name: (record, _hist_raw(k, 10 * k)) for k, name in enumerate(["noise-s16", "noise-s8", "noise-s24"])}
    titles = [ax.get_title() for ax in hist_comparison(panels).axes if ax.get_visible()]
    assert titles == ["noise-s8 (n = 50)", "noise-s16 (n = 50)", "noise-s24 (n = 50)"]
    own = [ax.get_xlim() for ax in hist_comparison(panels).axes[:3]]
    shared = [ax.get_xlim() for ax in hist_comparison(panels, shared_x=True).axes[:3]]
    assert len(set(own)) == 3 and len(set(shared)) == 1


def test_contour_levels_are_round_and_cover_the_range():
    from energybench.metrics.landscape_figures import round_levels

    for bound in (0.0137, 0.8, 3.3, 47.0):
        levels = round_levels(bound)
        step = levels[1] - levels[0]
        mantissa = step / 10 ** np.floor(np.log10(step))
        assert min(abs(mantissa - m) for m in (1, 2, 2.5, 5)) < 1e-9, (bound, step)
        assert np.allclose(np.diff(levels), step) and np.isclose(levels[0], -levels[-1])
        assert levels[0] <= -bound and levels[-1] >= bound and len(levels) <= 22


def test_robustness_comparison_has_wilson_error_bars():
    from energybench.core.stats import wilson_interval
    from energybench.reporting.plotting import robustness_scatter

    points = [{"name": "a", "clean": 0.5, "pgd20": 0.2, "autoattack": 0.15, "n_clean": 100, "n_pgd20": 100,
               "n_autoattack": 50},
              {"name": "b", "clean": 0.8, "pgd20": 0.05, "n_clean": 100, "n_pgd20": 100}]
    figure = robustness_scatter(points, "CIFAR-10 (JPEG q75 copy)")
    ax = figure.axes[0]
    assert "CIFAR-10 (JPEG q75 copy)" in ax.get_title() and "Wilson" in ax.get_title()
    bars = [c for c in ax.containers if c.has_yerr]
    low, high = wilson_interval(0.2, 100)
    segments = [seg for bar in bars for collection in bar.lines[2] for seg in collection.get_segments()]
    vertical = {(round(float(s[0][1]), 6), round(float(s[1][1]), 6)) for s in segments if s[0][0] == s[1][0]}
    assert (round(100 * float(low), 6), round(100 * float(high), 6)) in vertical
    assert len(bars) == 3  # PGD-20 twice and AutoAttack once


def test_plot_compare_energy_histograms_with_a_shared_axis(figure_records, run_cli, tmp_path):
    folder, records = figure_records
    (record,) = [r for r in records if r["metric"] == "energy-hist"]
    code, out, err = run_cli("plot", record["file"], record["file"], "--compare", "hists", "--shared-x",
                             "--out", str(tmp_path / "cmp"))
    assert code == 0, err
    assert (tmp_path / "cmp" / "hists.png").exists() and (tmp_path / "cmp" / "hists.pdf").exists()


def test_labels_of_close_points_do_not_overlap():
    """Two models at nearly the same accuracies (as noise-s8 and normal were) get labels that do
    not overlap on the page."""
    from energybench.reporting.plotting import robustness_scatter

    points = [{"name": "noise-s8", "clean": 0.445, "pgd20": 0.012}, {"name": "normal", "clean": 0.448, "pgd20": 0.014},
              {"name": "eb-jdat", "clean": 0.286, "pgd20": 0.134, "autoattack": 0.1}]
    figure = robustness_scatter(points)
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in figure.axes[0].texts]
    assert len(boxes) == 3
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not a.overlaps(b), (a, b)
