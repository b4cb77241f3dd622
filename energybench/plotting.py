"""Every figure energybench draws, from saved raw data only (so `energybench plot` can redraw any).

Metrics compute numbers and write raw data beside their record (`<stem>.npz` or
`<stem>.rows.jsonl`); `draw_record(record_file)` turns a record and its raw data into
`<stem>.png` (300 dpi) and `<stem>.pdf`. Titles name the model, its recipe and the attack budget.
Colour scales are shared across panels of one figure and labelled; histograms are outlines.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import torch

from energybench.errors import UserError
from energybench.results import atomic_output, protocol_text, write_text_atomic
from energybench.stats import wilson_interval

DPI = 300
_NO_DATES = {"pdf": {"CreationDate": None}, "svg": {"Date": None}}
FORMATS = ("png", "pdf")
SERIES = {"clean": ("tab:blue", "-"), "adversarial": ("tab:red", "--"), "generated": ("tab:green", ":")}


def pyplot():
    """matplotlib.pyplot on the Agg backend, with sizes for a paper column."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "legend.fontsize": 7,
                         "xtick.labelsize": 7, "ytick.labelsize": 7, "figure.dpi": 100,
                         "savefig.bbox": "tight", "pdf.fonttype": 42, "svg.hashsalt": "energybench"})
    return plt


def save(fig, stem: Path, formats=FORMATS) -> list[Path]:
    """Write `fig` as <stem>.<format> for each format (PNG at 300 dpi), atomically; close it."""
    paths = []
    for fmt in formats:
        path = Path(f"{stem}.{fmt}")
        with atomic_output(path) as tmp:  # no creation dates: the same figure gives the same file
            fig.savefig(tmp, dpi=DPI, format=fmt, metadata=_NO_DATES.get(fmt))
        paths.append(path)
    pyplot().close(fig)
    return paths


def image_grid(images: torch.Tensor, per_row: int) -> np.ndarray:
    """(N, 3, H, W) float in [0, 1] or uint8 -> (rows*(H+2)+2, per_row*(W+2)+2, 3) uint8, white
    gaps (torchvision.utils.make_grid)."""
    from torchvision.utils import make_grid

    if images.dtype == torch.uint8:
        images = images.float() / 255
    grid = make_grid(images.clamp(0, 1), nrow=per_row, padding=2, pad_value=1.0)
    return (grid * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def save_picture(picture: np.ndarray, path: Path, scale: int = 3) -> None:
    """An (H, W, 3) uint8 picture as a PNG, enlarged `scale` times (nearest), atomically."""
    from PIL import Image

    img = Image.fromarray(picture)
    with atomic_output(path) as tmp:
        img.resize((img.width * scale, img.height * scale), Image.NEAREST).save(tmp, format="PNG")


def save_sample_grids(images: torch.Tensor, labels: torch.Tensor, classes, out: Path, title: str,
                      per_row: int = 10) -> None:
    """grid.png/.pdf (one labelled row per class) and one plain grid-<k>-<class>.png per class."""
    out.mkdir(parents=True, exist_ok=True)
    for c in sorted(set(labels.tolist())):
        name = classes[c] if classes else str(c)
        save_picture(image_grid(images[labels == c], per_row), out / f"grid-{c}-{name}.png")
    save(sample_grid(images, labels, classes, title, per_row), out / "grid")


def model_label(record: dict) -> str:
    """How a title names the model: recipe and checkpoint file, or its handle's name."""
    model = record.get("model", {})
    if model.get("recipe"):
        which = (model.get("checkpoint") or {}).get("which", "")
        sigma = (model.get("recipe_params") or {}).get("sigma")  # the noise study's one variable
        recipe = model["recipe"] + (f" σ={eps_text(sigma)}" if sigma is not None else "")
        return f"{recipe} ({model.get('model', {}).get('name', '?')}, {which}.pt)" if which else recipe
    return model.get("name") or Path(model.get("path") or "model").name


def eps_text(eps: float) -> str:
    return f"{eps * 255:.3g}/255"


# ----------------------------------------------------------------------------- per-metric figures


def energy_hist(record: dict, raw: dict):
    """Clean, PGD-20 and generated E(x, y): outlined densities on shared bins."""
    plt = pyplot()
    series = {k: raw[k] for k in SERIES if k in raw}
    lo = min(v.min() for v in series.values())
    hi = max(v.max() for v in series.values())
    bins = np.linspace(lo, hi, int(record["params"].get("bins", 60)) + 1)
    fig, ax = plt.subplots(figsize=(3.4, 2.4))
    _hist_panel(ax, series, bins, record["params"]["eps"])
    ax.set_title(f"{model_label(record)}\nE(x, y) of clean, PGD-20 and SGLD samples")
    return fig


def _hist_panel(ax, series: dict, bins, eps: float) -> None:
    names = {"clean": "clean", "adversarial": f"PGD-20, eps {eps_text(eps)}", "generated": "generated (SGLD)"}
    for key, values in series.items():
        colour, style = SERIES[key]
        ax.hist(values, bins=bins, density=True, histtype="step", linewidth=1.4, linestyle=style,
                color=colour, label=f"{names[key]} (mean {values.mean():.2f})")
        ax.axvline(values.mean(), color=colour, linewidth=0.6, alpha=0.6)
    ax.set_xlabel("E(x, y) = -f(x)[y]   (lower: more likely)")
    ax.set_ylabel("density")
    ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(0, -0.22), ncols=1)


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
    levels = np.linspace(-bound, bound, 21)
    means = record["extra"].get("rise_per_image", [None] * n)
    for k, ax in enumerate(axes[0]):
        filled = ax.contourf(steps, steps, rise[k].T, levels=levels, cmap="RdBu_r")
        ax.contour(steps, steps, rise[k].T, levels=levels[::4], colors="black", linewidths=0.3)
        ax.plot(0, 0, marker="*", color="white", markeredgecolor="black", markersize=8)
        name = classes[int(raw["labels"][k])] if classes is not None else f"class {int(raw['labels'][k])}"
        mean = f"\nmean rise {means[k]:.3g}" if means[k] is not None else ""
        ax.set_title(f"image {k} ({name}){mean}")
        ax.set_xlabel("direction 1 (/255)")
        ax.set_aspect("equal")
        if k:
            ax.set_yticklabels([])
    axes[0][0].set_ylabel("direction 2 (/255)")
    fig.colorbar(filled, ax=axes[0].tolist(), label="E(x + a d1 + b d2, y) - E(x, y)", shrink=0.9)
    fig.suptitle(f"{model_label(record)}: energy around test images along random sign directions "
                 f"(mean rise: within ±{eps_text(record['params']['flat_radius'])})")
    return fig


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
    fig.suptitle(f"{model_label(record)}: energy dynamics during training")
    return fig


def _l2(record: dict) -> bool:
    return (record.get("params") or {}).get("norm") == "L2"


def _curve(ax, record: dict, raw: dict, label: str, colour=None) -> None:
    eps, acc = raw["eps"] * (1 if _l2(record) else 255), raw["accuracy"]
    lower, upper = wilson_interval(acc, record["n"])
    line, = ax.plot(eps, 100 * acc, "o-", markersize=3, linewidth=1.2, color=colour, label=label)
    ax.fill_between(eps, 100 * lower, 100 * upper, color=line.get_color(), alpha=0.15, linewidth=0)


def _curve_axes(ax, record: dict) -> None:
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
    _curve(ax, record, raw, f"{model_label(record)} (n = {record['n']:,})")
    _curve_axes(ax, record)
    ax.legend(frameon=False, loc="upper right")
    ax.set_title(f"Robustness curve, {record['data'].get('label') or 'test data'}")
    return fig


def curve_comparison(curves: dict[str, tuple[dict, dict]]):
    """Several models' robustness curves on one axis: {name: (record, raw)}."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(3.8, 2.8), constrained_layout=True)
    first = None
    for name, (record, raw) in curves.items():
        _curve(ax, record, raw, f"{name} (n = {record['n']:,})")
        first = first or record
    _curve_axes(ax, first)
    ax.legend(frameon=False, loc="upper right", fontsize=6)
    ax.set_title(f"Robustness curves, {first['data'].get('label') or 'test data'} (95% Wilson intervals)")
    return fig


def memorization(record: dict, raw: dict):
    """Each generated image (left column, class name) beside its nearest training images by SSIM."""
    if "figure_samples" not in raw:
        raise UserError(f"{record.get('file', 'the record')}'s raw data predates redrawable figures; "
                        f"run eval again with --force")
    plt = pyplot()
    samples, neighbours, ssim = raw["figure_samples"], raw["figure_neighbours"], raw["figure_ssim"]
    classes = [str(c) for c in raw["classes"]]
    rows, k = ssim.shape
    tiles = torch.from_numpy(np.concatenate([samples[:, None], neighbours], axis=1)).reshape(-1, *samples.shape[1:])
    picture = image_grid(tiles, k + 1)
    cell = picture.shape[1] / (k + 1)
    fig, ax = plt.subplots(figsize=(0.5 * (k + 1) + 0.8, 0.55 * rows + 0.5))
    ax.imshow(picture, interpolation="nearest")
    for r in range(rows):
        for j in range(k):
            ax.text((j + 1.5) * cell, (r + 1) * cell - 3, f"{ssim[r, j]:.2f}", ha="center", va="bottom",
                    fontsize=5, color="white", bbox={"facecolor": "black", "alpha": 0.6, "pad": 0.5,
                                                     "linewidth": 0})
    ax.set_yticks([(r + 0.5) * cell for r in range(rows)])
    ax.set_yticklabels([classes[int(c)] for c in raw["figure_labels"]])
    ax.set_xticks([0.5 * cell] + [(j + 1.5) * cell for j in range(k)])
    ax.set_xticklabels(["sample"] + [f"#{j + 1}" for j in range(k)])
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_title(f"{model_label(record)}: SGLD samples and their {k} nearest training images "
                 f"(SSIM on each)")
    return fig


def sample_grid(images: torch.Tensor, labels: torch.Tensor, classes, title: str, per_row: int = 10):
    """One row per class, its name on the left. images: (N, 3, H, W) in [0, 1]; labels (N,)."""
    plt = pyplot()
    rows, names = [], []
    per_row = min(per_row, max(int((labels == c).sum()) for c in set(labels.tolist())))
    for c in sorted(set(labels.tolist())):
        imgs = images[labels == c][:per_row]
        if len(imgs) < per_row:
            imgs = torch.cat([imgs, torch.ones(per_row - len(imgs), *imgs.shape[1:])])
        rows.append(imgs)
        names.append(classes[c] if classes else str(c))
    picture = image_grid(torch.cat(rows), per_row)
    cell = picture.shape[0] / len(rows)
    fig, ax = plt.subplots(figsize=(0.42 * per_row + 0.9, 0.42 * len(rows) + 0.4))
    ax.imshow(picture, interpolation="nearest")
    ax.set_yticks([(r + 0.5) * cell for r in range(len(rows))])
    ax.set_yticklabels(names)
    ax.set_xticks([])
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_title(title)
    return fig


# ----------------------------------------------------------------------------- comparisons


def hist_comparison(panels: dict[str, tuple[dict, dict]]):
    """Energy histograms of several models side by side: {run name: (record, raw)}."""
    plt = pyplot()
    n = len(panels)
    cols = min(n, 3)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.5 * cols, 2.1 * rows), squeeze=False, constrained_layout=True)
    for ax, (name, (record, raw)) in zip(axes.ravel(), panels.items()):
        series = {k: raw[k] for k in SERIES if k in raw}
        lo = min(v.min() for v in series.values())
        hi = max(v.max() for v in series.values())
        _hist_panel(ax, series, np.linspace(lo, hi, 41), record["params"]["eps"])
        ax.set_title(name)
        ax.get_legend().remove()
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, [label.split(" (mean")[0] for label in labels], loc="outside lower center",
               ncols=3, frameon=False)
    fig.suptitle("E(x, y) of clean, PGD-20 and generated images, per recipe")
    return fig


def robustness_scatter(points: list[dict]):
    """Robust vs clean accuracy, one labelled point per model: {name, clean, pgd20, autoattack,
    n_pgd20, n_autoattack} (accuracies as fractions; autoattack and the n's optional)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(3.4, 2.8), constrained_layout=True)
    for p in points:
        ax.scatter(100 * p["clean"], 100 * p["pgd20"], color="tab:red", marker="o", s=18, zorder=3)
        ax.annotate(p["name"], (100 * p["clean"], 100 * p["pgd20"]), textcoords="offset points",
                    xytext=(4, 3), fontsize=6)
        if p.get("autoattack") is not None:
            ax.scatter(100 * p["clean"], 100 * p["autoattack"], color="tab:blue", marker="x", s=18, zorder=3)
            ax.plot([100 * p["clean"]] * 2, [100 * p["pgd20"], 100 * p["autoattack"]], color="grey",
                    linewidth=0.6, zorder=2)
    def images(key):
        ns = sorted({p[f"n_{key}"] for p in points if p.get(f"n_{key}")})
        return f" ({'/'.join(map(str, ns))} images)" if ns else ""

    ax.scatter([], [], color="tab:red", marker="o", s=18, label="PGD-20" + images("pgd20"))
    if any(p.get("autoattack") is not None for p in points):
        ax.scatter([], [], color="tab:blue", marker="x", s=18, label="AutoAttack" + images("autoattack"))
    ax.set_xlabel("clean accuracy (%)")
    ax.set_ylabel("robust accuracy (%), L-inf 8/255")
    ax.legend(frameon=False, loc="lower left")
    ax.grid(alpha=0.3, linewidth=0.5)
    ax.set_title("Robust vs clean accuracy")
    return fig


# ----------------------------------------------------------------------------- records


def read_raw(record_file: Path, record: dict):
    """The raw data a record's figure is drawn from (its `raw` file beside it: a plain file name,
    never a path that leads out of the record's folder)."""
    extra = record.get("extra") if isinstance(record.get("extra"), dict) else {}
    name = extra.get("raw")
    if name is not None and (not isinstance(name, str) or Path(name).name != name or name in ("", ".", "..")):
        raise UserError(f"{record_file}: its raw data must be a file beside it, not {str(name)[:80]!r}")
    path = Path(record_file).parent / name if name else None
    if path is None or not path.is_file():
        raise UserError(f"{record_file}: its raw data {name or '(none named)'} is not beside it; "
                        f"run eval again to recreate it")
    try:
        if path.suffix == ".jsonl":
            rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            if not all(isinstance(row, dict) for row in rows):
                raise ValueError("a line is not a JSON object")
            return rows
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (OSError, ValueError, RecursionError, EOFError, zipfile.BadZipFile) as exc:
        raise UserError(f"{record_file}: its raw data {name} is unreadable ({type(exc).__name__}); "
                        f"run eval again (with --force) to recreate it") from None


DRAWERS = {"energy-hist": energy_hist, "energy-contour": energy_contour,
           "energy-dynamics": energy_dynamics, "memorization": memorization, "robust-curve": robust_curve}
COMPARISONS = {"robust-curve": curve_comparison}  # metrics whose records `plot --compare` overlays


def _read_record(record_file: Path) -> dict:
    try:
        record = json.loads(record_file.read_text())
    except (OSError, ValueError, RecursionError) as exc:
        raise UserError(f"cannot read record {record_file} ({str(exc)[:80]})") from None
    if not isinstance(record, dict) or not isinstance(record.get("metric"), str):
        raise UserError(f"{record_file} is not an energybench record")
    return record


def draw_comparison(record_files: list[Path], out_stem: Path, formats=FORMATS) -> list[Path]:
    """One figure overlaying the given records (all of one metric in COMPARISONS), named by model."""
    records = [(Path(f), _read_record(Path(f))) for f in record_files]
    metrics = {r["metric"] for _, r in records}
    if len(metrics) != 1 or next(iter(metrics)) not in COMPARISONS:
        raise UserError(f"--compare overlays records of one metric among {', '.join(COMPARISONS)}; got "
                        f"{', '.join(sorted(metrics))}")
    curves = {}
    for f, r in records:
        name = model_label(r)
        while name in curves:
            name += "'"
        curves[name] = ({**r, "file": str(f)}, read_raw(f, r))
    return save(COMPARISONS[next(iter(metrics))](curves), out_stem, formats)


def draw_record(record_file: str | Path, out_dir: str | Path | None = None, formats=FORMATS) -> list[Path]:
    """Redraw a record's figure from its raw data; returns the files written (none for metrics
    without a figure). out_dir defaults to the record's folder."""
    record_file = Path(record_file)
    record = _read_record(record_file)
    drawer = DRAWERS.get(record["metric"])
    if drawer is None:
        return []
    raw = read_raw(record_file, record)
    try:
        fig = drawer({**record, "file": str(record_file)}, raw)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        pyplot().close("all")
        raise UserError(f"{record_file}: the record or its raw data does not hold what its figure needs "
                         f"({type(exc).__name__}: {str(exc)[:80]}); run eval again (with --force)") from None
    stem = Path(out_dir or record_file.parent) / record_file.stem
    paths = save(fig, stem, formats)
    caption = Path(f"{stem}.caption.txt")
    write_text_atomic(caption_text(record, record_file) + "\n", caption)
    return paths + [caption]


def caption_text(record: dict, record_file: Path) -> str:
    """A figure's caption: what it shows, of which model (and its file), on what data, how many
    images, under which protocol, and where the numbers come from."""
    model = record.get("model") or {}
    path = model.get("path")
    model_file = f"{Path(path).parent.name}/{Path(path).name}" if path else model.get("name", "?")
    data = (record.get("data") or {}).get("label", "?")
    protocol = protocol_text(record)
    return (f"{record['metric']} of {model_label(record)} (file {model_file}) on {data}: "
            f"n = {record.get('n')} test images"
            + (f"; protocol: {protocol}" if protocol and protocol != "default" else "")
            + f"; value {record.get('value'):.4g}. Drawn by energybench from {record_file.name} and its raw data.")
