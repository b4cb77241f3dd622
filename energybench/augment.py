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
    n, _, h, w = images.shape
    device = images.device
    if padding > 0:
        padded = F.pad(images, (padding, padding, padding, padding))
        dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=device)
        dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=device)
        rows = (dy[:, None] + torch.arange(h, device=device))[:, None, :, None]  # (N,1,H,1)
        cols = (dx[:, None] + torch.arange(w, device=device))[:, None, None, :]  # (N,1,1,W)
        batch = torch.arange(n, device=device)[:, None, None, None]
        chans = torch.arange(images.shape[1], device=device)[None, :, None, None]
        images = padded[batch, chans, rows, cols]
    if flip:
        mask = torch.rand(n, generator=generator, device=device) < 0.5
        images = torch.where(mask[:, None, None, None], images.flip(3), images)
    return images
