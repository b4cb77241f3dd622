"""A record's figure, drawn from its saved raw data only (so `energybench plot` can redraw any).

Metrics compute numbers and write raw data beside their record (`<stem>.npz` or
`<stem>.rows.jsonl`); each metric with a figure declares its drawer (`Metric.draw`), and
`draw_record(record_file, drawer)` turns the record and its raw data into `<stem>.png` (300 dpi),
`<stem>.pdf` and `<stem>.caption.txt`. Shared here: the figure style, labels, captions, image grids.
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from energybench.core.atomic import atomic_output, write_text_atomic
from energybench.core.errors import UserError, option
from energybench.records.store import load_record
from energybench.records.text import protocol_text

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
    """How a title names the model: the record's `display_label` where the user gave one; else
    recipe, architecture and the checkpoint's file name (its run folder too where the file is
    last.pt or best.pt), or its handle's name."""
    model = record.get("model", {})
    if record.get("display_label"):  # given by the user (plot --label)
        return record["display_label"]
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


def reference_label(record: dict) -> str:
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


def natural_key(name: str) -> list:
    """Sort key that orders numbers inside names by value: noise-s8 < noise-s16 < noise-s24."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


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
                        f"run eval again (with {option('force')}) to recreate it") from None


def draw_record(record_file: str | Path, drawer: Callable | None, out_dir: str | Path | None = None,
                formats=FORMATS, label: str | None = None) -> list[Path]:
    """Redraw a record's figure from its raw data with `drawer(record, raw) -> figure` (its metric's
    `Metric.draw`); returns the files written (none when the metric has no figure). out_dir
    defaults to the record's folder; `label` names the model in the figure and caption."""
    record_file = Path(record_file)
    record = load_record(record_file)
    if label:
        record = {**record, "display_label": label}
    if drawer is None:
        return []
    raw = read_raw(record_file, record)
    try:
        fig = drawer({**record, "file": str(record_file)}, raw)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        pyplot().close("all")
        raise UserError(f"{record_file}: the record or its raw data does not hold what its figure needs "
                         f"({type(exc).__name__}: {str(exc)[:80]}); run eval again (with {option('force')})") from None
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
