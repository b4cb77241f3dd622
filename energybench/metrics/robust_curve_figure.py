"""The figure of robust-curve: accuracy against the attack budget, with its 95% band.
"""

from __future__ import annotations

from energybench.core.stats import wilson_interval
from energybench.records.figures import model_label, pyplot

BAND = "shaded: 95% Wilson interval at each budget"


def _l2(record: dict) -> bool:
    return (record.get("params") or {}).get("norm") == "L2"


def curve(ax, record: dict, raw: dict, label: str, colour=None) -> None:
    """One model's curve (accuracy in % against eps: /255 for L-inf, a length for L2) and its band."""
    eps, acc = raw["eps"] * (1 if _l2(record) else 255), raw["accuracy"]
    lower, upper = wilson_interval(acc, record["n"])
    line, = ax.plot(eps, 100 * acc, "o-", markersize=3, linewidth=1.2, color=colour, label=label)
    ax.fill_between(eps, 100 * lower, 100 * upper, color=line.get_color(), alpha=0.15, linewidth=0)


def curve_axes(ax, record: dict) -> None:
    """Axis labels (norm, attack, step), limits, grid, and the standard budget as a dotted line."""
    params = record["params"]
    budget = "L2 budget eps" if _l2(record) else "L-inf budget eps (/255)"
    ax.set_xlabel(f"{budget}; PGD-{params['steps']}, step {params['step_ratio']:g} eps")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.margins(x=0.02)
    ax.grid(alpha=0.3, linewidth=0.5)
    standard = "0.5" if _l2(record) else "8/255"
    ax.axvline(0.5 if _l2(record) else 8, color="grey", linewidth=0.6, linestyle=":",
               label=f"standard budget ({standard})")


def curve_legend(ax, fontsize: float = 7) -> None:
    """The legend: each model with its n, the dotted standard budget, and what the band is."""
    from matplotlib.patches import Patch

    handles, labels = ax.get_legend_handles_labels()
    handles.append(Patch(color="grey", alpha=0.15, linewidth=0))
    labels.append(BAND)
    ax.legend(handles, labels, frameon=False, loc="upper right", fontsize=fontsize)


def robust_curve(record: dict, raw: dict):
    """Robust accuracy against eps with 95% Wilson intervals (eps 0: clean accuracy); the title
    names the data, the legend the model and its number of images."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(3.6, 2.7), constrained_layout=True)
    curve(ax, record, raw, f"{model_label(record)} (n = {record['n']:,})")
    curve_axes(ax, record)
    curve_legend(ax)
    ax.set_title(f"Robustness curve on {record['data'].get('label') or 'test data'}", fontsize=8)
    return fig
