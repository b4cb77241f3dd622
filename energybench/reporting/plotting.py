"""Figures of several records together: robustness curves overlaid, energy histograms side by
side (`energybench plot --compare`), and the robust-vs-clean comparison of a reproduction.

A single record's figure is its metric's own (`Metric.draw`, drawn by `records.figures.draw_record`);
this module reuses those drawers' panels, so a compared panel looks like the single one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from energybench.core.errors import UserError, option
from energybench.core.stats import wilson_interval
from energybench.metrics.landscape_figures import hist_panel
from energybench.metrics.robust_curve_figure import curve, curve_axes, curve_legend
from energybench.records.figures import FORMATS, SERIES, model_label, natural_key, pyplot, read_raw, save
from energybench.records.store import load_record, protocol_norm


def curve_comparison(curves: dict[str, tuple[dict, dict]]):
    """Several models' robustness curves on one axis: {name: (record, raw)}."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(3.8, 2.8), constrained_layout=True)
    first = None
    for name, (record, raw) in curves.items():
        curve(ax, record, raw, f"{name} (n = {record['n']:,})")
        first = first or record
    curve_axes(ax, first)
    curve_legend(ax, fontsize=6)
    ax.set_title(f"Robustness curves on {first['data'].get('label') or 'test data'}", fontsize=8)
    return fig


# ----------------------------------------------------------------------------- comparisons


def hist_comparison(panels: dict[str, tuple[dict, dict]], shared_x: bool = False):
    """Energy histograms of several models side by side: {run name: (record, raw)}, panels in
    natural order of their names; `shared_x` puts every panel on one energy axis and bins."""
    plt = pyplot()
    panels = dict(sorted(panels.items(), key=lambda item: natural_key(item[0])))
    n = len(panels)
    cols = min(n, 3)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.5 * cols, 2.1 * rows), squeeze=False, constrained_layout=True,
                             sharex=shared_x)
    every = [raw[k] for _, raw in panels.values() for k in SERIES if k in raw]
    shared_bins = np.linspace(min(v.min() for v in every), max(v.max() for v in every), 61)
    for ax, (name, (record, raw)) in zip(axes.ravel(), panels.items()):
        series = {k: raw[k] for k in SERIES if k in raw}
        lo = min(v.min() for v in series.values())
        hi = max(v.max() for v in series.values())
        hist_panel(ax, series, shared_bins if shared_x else np.linspace(lo, hi, 41), record["params"]["eps"])
        ax.set_title(f"{name} (n = {len(series.get('clean', [])):,})")
        ax.get_legend().remove()
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, [label.split(" (mean")[0] for label in labels], loc="outside lower center",
               ncols=4, frameon=False)
    first = next(iter(panels.values()))[0]
    fig.suptitle(f"E(x, y) of clean, PGD-20 and generated images, per run; "
                 f"{(first.get('data') or {}).get('label') or 'test data'}")
    return fig


def _interval(p: float, n: int | None):
    """A 95% Wilson interval as (below, above) distances in percent, for matplotlib's error bars."""
    if not n:
        return None
    low, high = wilson_interval(p, n)
    return [[100 * (p - float(low))], [100 * (float(high) - p)]]


def label_points(ax, points: list[tuple[float, float, str]], fontsize: float = 6, gap: float = 7.5) -> None:
    """Label each point (x, y, text) to its upper right, moving labels apart vertically (in
    typographic points) where two would overlap: labels whose anchors lie within a label's width
    of each other are stacked at least `gap` points apart, in the order of their points' heights."""
    fig = ax.figure
    fig.canvas.draw()  # the data-to-display transform of the final limits
    to_points = 72 / fig.dpi
    placed: list[tuple[float, float, float]] = []  # (x, y, width) of labels already put, in points
    for x, y, text in sorted(points, key=lambda p: -p[1]):
        px, py = (v * to_points for v in ax.transData.transform((x, y)))
        width = 0.55 * fontsize * len(text)
        ly = py + 3
        for qx, qy, qw in placed:
            if abs((px + 4) - qx) < max(width, qw) and abs(ly - qy) < gap:
                ly = qy - gap
        placed.append((px + 4, ly, width))
        ax.annotate(text, (x, y), textcoords="offset points", xytext=(4, ly - py), fontsize=fontsize,
                    annotation_clip=True, zorder=4,
                    bbox={"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none", "alpha": 0.85},
                    arrowprops={"arrowstyle": "-", "linewidth": 0.3, "color": "grey"} if ly - py < -2 else None)


def robustness_scatter(points: list[dict], data: str | None = None):
    """Robust vs clean accuracy, one labelled point per model: {name, clean, pgd20, autoattack,
    n_clean, n_pgd20, n_autoattack} (accuracies as fractions; autoattack and the n's optional),
    with 95% Wilson intervals as error bars where the n's are given."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(3.4, 2.8), constrained_layout=True)
    for p in points:
        x_err = _interval(p["clean"], p.get("n_clean") or p.get("n_pgd20"))
        ax.errorbar(100 * p["clean"], 100 * p["pgd20"], xerr=x_err, yerr=_interval(p["pgd20"], p.get("n_pgd20")),
                    color="tab:red", marker="o", markersize=3.5, linewidth=0.7, capsize=1.5, zorder=3)
        if p.get("autoattack") is not None:
            ax.errorbar(100 * p["clean"], 100 * p["autoattack"], yerr=_interval(p["autoattack"], p.get("n_autoattack")),
                        color="tab:blue", marker="x", markersize=3.5, linewidth=0.7, capsize=1.5, zorder=3)
            ax.plot([100 * p["clean"]] * 2, [100 * p["pgd20"], 100 * p["autoattack"]], color="grey",
                    linewidth=0.6, zorder=2)
    def images(key):
        ns = sorted({p[f"n_{key}"] for p in points if p.get(f"n_{key}")})
        return f" ({'/'.join(map(str, ns))} images)" if ns else ""

    ax.scatter([], [], color="tab:red", marker="o", s=18, label="PGD-20" + images("pgd20") + ", labelled")
    if any(p.get("autoattack") is not None for p in points):
        ax.scatter([], [], color="tab:blue", marker="x", s=18,
                   label="AutoAttack" + images("autoattack") + "; grey line to its model")
    ax.set_xlabel("clean accuracy (%)")
    ax.set_ylabel("robust accuracy (%), L-inf 8/255")
    ax.margins(x=0.18, y=0.12)  # room for the point labels inside the axes
    label_points(ax, [(100 * p["clean"], 100 * p["pgd20"], p["name"]) for p in points])
    ax.legend(frameon=False, loc="upper left", fontsize=6)
    ax.grid(alpha=0.3, linewidth=0.5)
    ax.set_title("Robust vs clean accuracy (error bars: 95% Wilson intervals)"
                 + (f"\n{data}" if data else ""))
    return fig


def budget_sweep(records: list[dict]):
    """Records of one accuracy metric at several budgets (e.g. pgd20 at --eps 2/255, 4/255, 8/255)
    as curves: accuracy against eps per model, with 95% Wilson bands; one norm per figure."""
    plt = pyplot()
    norms = {protocol_norm(r.get("params") or {}) or "Linf" for r in records}
    if len(norms) != 1:
        raise UserError(f"{option('compare')} draws budgets of one threat model per figure; got {', '.join(sorted(norms))}")
    l2 = norms == {"L2"}
    fig, ax = plt.subplots(figsize=(3.6, 2.7), constrained_layout=True)
    by_model: dict[str, list[dict]] = {}
    for r in records:
        by_model.setdefault(model_label(r), []).append(r)
    for name, rows in by_model.items():
        rows = sorted(rows, key=lambda r: r["params"]["eps"])
        eps = np.array([r["params"]["eps"] * (1 if l2 else 255) for r in rows])
        acc = np.array([r["value"] for r in rows])
        low, high = zip(*(wilson_interval(r["value"], r["n"]) for r in rows))
        ns = sorted({r["n"] for r in rows})
        line, = ax.plot(eps, 100 * acc, "o-", markersize=3, linewidth=1.2,
                        label=f"{name} (n = {'/'.join(f'{k:,}' for k in ns)})")
        ax.fill_between(eps, 100 * np.array(low, dtype=float), 100 * np.array(high, dtype=float),
                        color=line.get_color(), alpha=0.15, linewidth=0)
    ax.set_xlabel("L2 budget eps" if l2 else "L-inf budget eps (/255)")
    ax.set_ylabel(f"{records[0]['metric']} accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3, linewidth=0.5)
    curve_legend(ax)
    ax.set_title(f"{records[0]['metric']} against the budget on "
                 f"{(records[0].get('data') or {}).get('label') or 'test data'}", fontsize=8)
    return fig


def sweepable(record: dict) -> bool:
    """An accuracy record with a budget: several of them, at different eps, make a curve."""
    return record.get("unit") == "fraction" and isinstance((record.get("params") or {}).get("eps"), float)


# metrics whose records `plot --compare` draws together (curves overlaid, histograms side by side);
# records of any other accuracy metric with an eps are drawn against their budgets (`budget_sweep`)
COMPARISONS = {"robust-curve": curve_comparison, "energy-hist": hist_comparison}


def draw_comparison(record_files: list[Path], out_stem: Path, formats=FORMATS, shared_x: bool = False,
                    labels: dict | None = None) -> list[Path]:
    """One figure of the given records (all of one metric in COMPARISONS), named by model (or by
    `labels`, {record file: name}); `shared_x` puts energy histograms on one energy axis."""
    labels = {Path(k): v for k, v in (labels or {}).items()}
    records = [(Path(f), {**load_record(Path(f)), **({"display_label": labels[Path(f)]} if Path(f) in labels else {})})
               for f in record_files]
    metrics = {r["metric"] for _, r in records}
    if len(metrics) == 1 and next(iter(metrics)) not in COMPARISONS and all(sweepable(r) for _, r in records):
        return save(budget_sweep([r for _, r in records]), out_stem, formats)
    if len(metrics) != 1 or next(iter(metrics)) not in COMPARISONS:
        raise UserError(f"{option('compare')} overlays records of one metric among {', '.join(COMPARISONS)}, or "
                        f"records of one accuracy metric at several budgets; got "
                        f"{', '.join(sorted(metrics))}")
    curves = {}
    for f, r in records:
        name = model_label(r)
        while name in curves:
            name += "'"
        curves[name] = ({**r, "file": str(f)}, read_raw(f, r))
    metric = next(iter(metrics))
    options = {"shared_x": shared_x} if metric == "energy-hist" else {}
    return save(COMPARISONS[metric](curves, **options), out_stem, formats)
