"""PNG figures: sample grids. Every figure is written with its raw data beside it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from energybench.results import atomic_output


def image_grid(images: torch.Tensor, rows: int, cols: int, pad: int = 1) -> np.ndarray:
    """(N, C, H, W) float in [0, 1] -> (rows*(H+pad)+pad, cols*(W+pad)+pad, C) uint8 grid."""
    n, c, h, w = images.shape
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), 255, dtype=np.uint8)
    pixels = (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    for i in range(min(n, rows * cols)):
        r, col = divmod(i, cols)
        grid[pad + r * (h + pad):pad + r * (h + pad) + h, pad + col * (w + pad):pad + col * (w + pad) + w] = pixels[i]
    return grid


def save_png(array: np.ndarray, path: Path, scale: int = 3) -> None:
    """An (H, W, C) uint8 image, enlarged `scale` times (nearest), written atomically."""
    from PIL import Image

    img = Image.fromarray(array)
    with atomic_output(path) as tmp:
        img.resize((img.width * scale, img.height * scale), Image.NEAREST).save(tmp, format="PNG")


def save_figure(fig, path: Path, dpi: int = 120) -> None:
    """A matplotlib figure, written atomically in the format of `path`'s suffix."""
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format=Path(path).suffix.lstrip("."))


def save_npz(path: Path, **arrays) -> None:
    """Raw data beside a figure (.npz), written atomically."""
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


def save_class_grids(samples, out: Path, classes=None, per_row: int = 10) -> None:
    """One PNG per class (grid-<k>-<name>.png) and grid.png with one row per class."""
    out.mkdir(parents=True, exist_ok=True)
    labels = samples.labels
    rows = []
    for k in sorted(set(labels.tolist())):
        imgs = samples.images[labels == k]
        name = classes[k] if classes else str(k)
        n_rows = -(-len(imgs) // per_row)
        save_png(image_grid(imgs, n_rows, per_row), out / f"grid-{k}-{name}.png")
        rows.append(imgs[:per_row])
    overview = torch.cat([torch.cat([r, torch.ones(per_row - len(r), *r.shape[1:])]) for r in rows])
    save_png(image_grid(overview, len(rows), per_row), out / "grid.png")
