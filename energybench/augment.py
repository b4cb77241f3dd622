"""Training augmentation on batched tensors: random crop with zero padding and horizontal flip."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_crop_flip(
    images: torch.Tensor, generator: torch.Generator, padding: int = 4, flip: bool = True
) -> torch.Tensor:
    """Random crop (zero padding `padding` px) and random horizontal flip, per image.

    images: (N, C, H, W) any dtype, on the generator's device -> same shape and dtype.
    Matches torchvision's RandomCrop(H, padding) + RandomHorizontalFlip() in distribution.
    """
    n, c, h, w = images.shape
    device = images.device
    dy = dx = torch.zeros(n, dtype=torch.long, device=device)
    if padding > 0:
        images = F.pad(images, (padding, padding, padding, padding))
        dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=device)
        dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=device)
    cols = torch.arange(w, device=device).expand(n, w)
    if flip:  # flipping the crop = reading its columns right to left
        mask = torch.rand(n, generator=generator, device=device) < 0.5
        cols = torch.where(mask[:, None], w - 1 - cols, cols)
    rows = dy[:, None] + torch.arange(h, device=device)  # (N, H)
    cols = dx[:, None] + cols  # (N, W)
    width = images.shape[3]
    flat = (rows[:, :, None] * width + cols[:, None, :]).view(n, 1, h * w).expand(n, c, h * w)
    return images.flatten(2).gather(2, flat).view(n, c, h, w)
