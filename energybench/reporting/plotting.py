"""Every figure energybench draws, from saved raw data only (so `energybench plot` can redraw any).

Metrics compute numbers and write raw data beside their record (`<stem>.npz` or
`<stem>.rows.jsonl`); `draw_record(record_file)` turns a record and its raw data into
`<stem>.png` (300 dpi) and `<stem>.pdf`. Titles name the model, its recipe and the attack budget.
Colour scales are shared across panels of one figure and labelled; histograms are outlines.
"""

from __future__ import annotations

import json
import re
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
                         "savefig.bbox": "tight", "savefig.pad_inches": 0.03, "pdf.fonttype": 42,
                         "svg.hashsalt": "energybench"})
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
    """How a title names the model: recipe, architecture and the checkpoint's file name (its run
    folder too where the file is last.pt or best.pt), or its handle's name."""
    model = record.get("model", {})
    if model.get("recipe"):
        which = (model.get("checkpoint") or {}).get("which", "")
        sigma = (model.get("recipe_params") or {}).get("sigma")  # the noise study's one variable
        recipe = model["recipe"] + (f" σ={eps_text(sigma)}" if sigma is not None else "")
        path = Path(model["path"]) if model.get("path") else None
        if path is not None:
            which = f"{path.parent.name}/{path.name}" if path.stem in ("last", "best") and path.parent.name \
                else path.name
        elif which:
            which = f"{which}.pt"
        return f"{recipe} ({model.get('model', {}).get('name', '?')}, {which})" if which else recipe
    return model.get("name") or Path(model.get("path") or "model").name


def data_label(record: dict, n: int | None = None) -> str:
    """The test data and how many images a figure shows, e.g. 'CIFAR-10 (JPEG q75 copy), n = 1,000'."""
    data = (record.get("data") or {}).get("label") or "test data"
    count = record.get("n") if n is None else n
    return f"{data}, n = {count:,}" if isinstance(count, int) else data


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
    ax.set_title(f"{model_label(record)}\nE(x, y) of clean, PGD-20 and SGLD samples\n{_hist_counts(record, series)}")
    return fig


def _hist_panel(ax, series: dict, bins, eps: float) -> None:
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
                 f"(SSIM on each)\n{rows} of {record.get('n', rows):,} samples shown; training images: "
                 f"{_reference_label(record)}")
    return fig


def _reference_label(record: dict) -> str:
    """The training images searched, e.g. '50,000 (the model's training split)'."""
    count = (record.get("extra") or {}).get("train_images")
    return f"{count:,} (the model's training split)" if isinstance(count, int) else "the model's training split"


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
    fig, ax = plt.subplots(figsize=(0.42 * per_row + 0.9, 0.42 * len(rows) + 0.4), layout="constrained")
    fig.get_layout_engine().set(w_pad=0.01, h_pad=0.01)
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


def natural_key(name: str) -> list:
    """Sort key that orders numbers inside names by value: noise-s8 < noise-s16 < noise-s24."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


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
        _hist_panel(ax, series, shared_bins if shared_x else np.linspace(lo, hi, 41), record["params"]["eps"])
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
        ax.annotate(p["name"], (100 * p["clean"], 100 * p["pgd20"]), textcoords="offset points",
                    xytext=(4, 3), fontsize=6, annotation_clip=True)
        if p.get("autoattack") is not None:
            ax.errorbar(100 * p["clean"], 100 * p["autoattack"], yerr=_interval(p["autoattack"], p.get("n_autoattack")),
                        color="tab:blue", marker="x", markersize=3.5, linewidth=0.7, capsize=1.5, zorder=3)
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
    ax.margins(x=0.18, y=0.12)  # room for the point labels inside the axes
    ax.legend(frameon=False, loc="upper left", fontsize=6)
    ax.grid(alpha=0.3, linewidth=0.5)
    ax.set_title("Robust vs clean accuracy (error bars: 95% Wilson intervals)"
                 + (f"\n{data}" if data else ""))
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
# metrics whose records `plot --compare` draws together (curves overlaid, histograms side by side)
COMPARISONS = {"robust-curve": curve_comparison, "energy-hist": hist_comparison}


def _read_record(record_file: Path) -> dict:
    try:
        record = json.loads(record_file.read_text())
    except (OSError, ValueError, RecursionError) as exc:
        raise UserError(f"cannot read record {record_file} ({str(exc)[:80]})") from None
    if not isinstance(record, dict) or not isinstance(record.get("metric"), str):
        raise UserError(f"{record_file} is not an energybench record")
    return record


def draw_comparison(record_files: list[Path], out_stem: Path, formats=FORMATS, shared_x: bool = False) -> list[Path]:
    """One figure of the given records (all of one metric in COMPARISONS), named by model;
    `shared_x` puts energy histograms on one energy axis."""
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
    metric = next(iter(metrics))
    options = {"shared_x": shared_x} if metric == "energy-hist" else {}
    return save(COMPARISONS[metric](curves, **options), out_stem, formats)


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
