"""The figure of robust-curve: accuracy against the attack budget, with its 95% band.
"""

from __future__ import annotations

from energybench.core.stats import wilson_interval
from energybench.records.figures import model_label, pyplot


def _l2(record: dict) -> bool:
    return (record.get("params") or {}).get("norm") == "L2"


def curve(ax, record: dict, raw: dict, label: str, colour=None) -> None:
    eps, acc = raw["eps"] * (1 if _l2(record) else 255), raw["accuracy"]
    lower, upper = wilson_interval(acc, record["n"])
    line, = ax.plot(eps, 100 * acc, "o-", markersize=3, linewidth=1.2, color=colour, label=label)
    ax.fill_between(eps, 100 * lower, 100 * upper, color=line.get_color(), alpha=0.15, linewidth=0)


def curve_axes(ax, record: dict) -> None:
    params = record["params"]
    budget = "L2 budget eps" if _l2(record) else "L-inf budget eps (/255)"
    ax.set_xlabel(f"{budget}; PGD-{params['steps']}, step {params['step_ratio']:g} eps")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3, linewidth=0.5)
    ax.axvline(0.5 if _l2(record) else 8, color="grey", linewidth=0.6, linestyle=":")  # the standard budget


def robust_curve(record: dict, raw: dict):
    """Robust accuracy against eps with 95% Wilson intervals (eps 0: clean accuracy)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(3.4, 2.6), constrained_layout=True)
    curve(ax, record, raw, f"{model_label(record)} (n = {record['n']:,})")
    curve_axes(ax, record)
    ax.legend(frameon=False, loc="upper right")
    ax.set_title(f"Robustness curve, {record['data'].get('label') or 'test data'}")
    return fig
