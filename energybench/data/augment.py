"""Training augmentation on batched tensors: random crop (zero or reflect padding) and
horizontal flip."""

from __future__ import annotations

import torch

PADDING_MODES = ("zeros", "reflect")


def _source_index(index: torch.Tensor, size: int, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Map coordinates of the padded image (shifted back by the padding, so in [-pad, size + pad))
    to coordinates of the original: (index clamped into range, mask of positions that exist).
    'reflect' mirrors at the border without repeating the edge pixel (numpy / torch 'reflect')."""
    if mode == "reflect":
        index = index.abs()
        index = torch.where(index > size - 1, 2 * (size - 1) - index, index)
        return index, torch.ones_like(index, dtype=torch.bool)
    inside = (index >= 0) & (index < size)
    return index.clamp(0, size - 1), inside


def random_crop_flip(
    images: torch.Tensor, generator: torch.Generator, padding: int = 4, flip: bool = True,
    padding_mode: str = "zeros",
) -> torch.Tensor:
    """Random crop (`padding` px of zero or reflect padding) and random horizontal flip, per image.

    images: (N, C, H, W) any dtype, on the generator's device -> same shape and dtype.
    Matches torchvision's RandomCrop(H, padding, padding_mode=...) + RandomHorizontalFlip() in
    distribution. One gather reads every output pixel from the unpadded images.
    """
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
    n, c, h, w = images.shape
    device = images.device
    dy = dx = torch.full((n,), padding, dtype=torch.long, device=device)
    if padding > 0:
        dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=device)
        dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=device)
    cols = torch.arange(w, device=device).expand(n, w)
    if flip:  # flipping the crop = reading its columns right to left
        mask = torch.rand(n, generator=generator, device=device) < 0.5
        cols = torch.where(mask[:, None], w - 1 - cols, cols)
    rows, row_ok = _source_index(dy[:, None] - padding + torch.arange(h, device=device), h, padding_mode)
    cols, col_ok = _source_index(dx[:, None] - padding + cols, w, padding_mode)
    flat = (rows[:, :, None] * w + cols[:, None, :]).view(n, 1, h * w).expand(n, c, h * w)
    out = images.flatten(2).gather(2, flat).view(n, c, h, w)
    if padding_mode == "zeros":
        out = out * (row_ok[:, :, None] & col_ok[:, None, :])[:, None].to(out.dtype)
    return out
