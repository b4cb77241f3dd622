"""The figures of the landscape metrics: energy histograms (EB-JDAT Fig. 2), energy contours
around an image (JEAT Fig. 2) and the energy changes during training (JEAT Fig. 3).
"""

from __future__ import annotations

import numpy as np

from energybench.records.figures import SERIES, data_label, eps_text, model_label, pyplot


def energy_hist(record: dict, raw: dict):
    """Clean, PGD-20 and generated E(x, y): outlined densities on shared bins."""
    plt = pyplot()
    series = {k: raw[k] for k in SERIES if k in raw}
    lo = min(v.min() for v in series.values())
    hi = max(v.max() for v in series.values())
    bins = np.linspace(lo, hi, int(record["params"].get("bins", 60)) + 1)
    fig, ax = plt.subplots(figsize=(3.4, 2.4))
    hist_panel(ax, series, bins, record["params"]["eps"])
    ax.set_title(f"{model_label(record)}\nE(x, y) of clean, PGD-20 and SGLD samples\n{_hist_counts(record, series)}")
    return fig


def hist_panel(ax, series: dict, bins, eps: float) -> None:
    names = {"clean": "clean", "adversarial": f"PGD-20, eps {eps_text(eps)}", "generated": "generated (SGLD)"}
    for key, values in series.items():
        colour, style = SERIES[key]
        ax.hist(values, bins=bins, density=True, histtype="step", linewidth=1.4, linestyle=style,
                color=colour, label=f"{names[key]} (mean {values.mean():.2f})")
        ax.axvline(values.mean(), color=colour, linewidth=0.6, alpha=0.6)
    ax.plot([], [], color="grey", linewidth=0.6, alpha=0.6, label="thin vertical lines: the means")
    ax.set_xlabel("E(x, y) = -f(x)[y]   (lower: more likely)")
    ax.set_ylabel("density")
    ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(0, -0.22), ncols=1)


def _hist_counts(record: dict, series: dict) -> str:
    """The data and each series' size, e.g. 'CIFAR-10 (JPEG q75 copy): 1,000 test images, 100 samples'."""
    data = (record.get("data") or {}).get("label") or "test data"
    tests = len(series.get("clean", []))
    made = f", {len(series['generated']):,} SGLD samples" if "generated" in series else ""
    return f"{data}: {tests:,} test images{made}"


def energy_contour(record: dict, raw: dict):
    """E(x + a d1 + b d2, y) - E(x, y) on a plane of two random sign directions d1, d2 around each
    image (JEAT Fig. 2), on one colour scale centred at 0 for all panels."""
    plt = pyplot()
    steps = raw["steps"] * 255
    centre = len(steps) // 2
    rise = raw["grid"] - raw["grid"][:, centre, centre][:, None, None]
    classes = [str(c) for c in raw["classes"]] if "classes" in raw else None
    n = len(rise)
    fig, axes = plt.subplots(1, n, figsize=(1.9 * n + 0.8, 2.2), squeeze=False, constrained_layout=True)
    bound = max(float(np.abs(rise).max()), 1e-6)
    levels = round_levels(bound)
    means = record["extra"].get("rise_per_image", [None] * n)
    for k, ax in enumerate(axes[0]):
        filled = ax.contourf(steps, steps, rise[k].T, levels=levels, cmap="RdBu_r")
        ax.contour(steps, steps, rise[k].T, levels=levels[::2], colors="black", linewidths=0.3)
        ax.plot(0, 0, marker="*", color="white", markeredgecolor="black", markersize=8)
        name = classes[int(raw["labels"][k])] if classes is not None else f"class {int(raw['labels'][k])}"
        mean = f"\nmean rise {means[k]:.3g}" if means[k] is not None else ""
        ax.set_title(f"image {k} ({name}){mean}")
        ax.set_xlabel("direction 1 (/255)")
        ax.set_aspect("equal")
        if k:
            ax.set_yticklabels([])
    axes[0][0].set_ylabel("direction 2 (/255)")
    fig.colorbar(filled, ax=axes[0].tolist(), label="E(x + a d1 + b d2, y) - E(x, y)", shrink=0.9,
                 ticks=levels[::2])
    fig.suptitle(f"{model_label(record)}: energy around test images along random sign directions "
                 f"(mean rise: within ±{eps_text(record['params']['flat_radius'])})\n"
                 f"{data_label(record, n)} test images shown")
    return fig


def round_levels(bound: float) -> np.ndarray:
    """Contour levels symmetric about 0 at round steps (1, 2, 2.5 or 5 times a power of ten) that
    cover [-bound, bound]: about 20 bands, every other one labelled on the colour bar."""
    from matplotlib.ticker import MaxNLocator

    levels = MaxNLocator(nbins=20, steps=[1, 2, 2.5, 5, 10], symmetric=True).tick_values(-bound, bound)
    return np.round(levels, 12)


def energy_dynamics(record: dict, rows: list[dict]):
    """Delta_x E (attack) and Delta_theta E (update) per epoch, joint and marginal (JEAT Fig. 3)."""
    plt = pyplot()
    epochs = [r["epoch"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(6.8, 2.4), constrained_layout=True)
    for ax, kind in zip(axes, ("joint", "marginal")):
        ax.plot(epochs, [r[f"dxE_{kind}"] for r in rows], "o-", color="tab:red", markersize=3,
                label="Δx E (attack step)")
        theta = [(r["epoch"], r[f"dthetaE_{kind}"]) for r in rows if f"dthetaE_{kind}" in r]
        if theta:
            ax.plot(*zip(*theta), "s--", color="tab:blue", markersize=3, label="Δθ E (parameter update)")
        ax.axhline(0, color="grey", linewidth=0.6)
        ax.set_title("E(x, y)" if kind == "joint" else "E(x)")
        ax.set_xlabel("epoch")
        ax.set_ylabel("energy change")
        ax.legend(frameon=False)
    fig.suptitle(f"{model_label(record)}: energy dynamics during training (JEAT eq. 15 on a fixed "
                 f"training probe, per epoch)")
    return fig
