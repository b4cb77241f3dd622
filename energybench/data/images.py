"""Labelled images in memory: `LabeledImages` (uint8 NCHW tensors, labels, class names and the
provenance records carry), images given by a caller, and the checks every decoder applies.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from energybench.core.errors import UserError
from energybench.core.hashing import tensors_sha256


@dataclass(frozen=True)
class LabeledImages:
    """One split of a dataset.

    images: uint8 (N, 3, H, W) in [0, 255]; labels: int64 (N,) in [0, num_classes).
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    source: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def subset(self, n: int | None, offset: int = 0) -> "LabeledImages":
        """The first n images (from offset), in source order; n=None keeps all."""
        end = len(self) if n is None else min(len(self), offset + n)
        source = dict(self.source, subset={"offset": offset, "n": end - offset})
        return LabeledImages(self.images[offset:end], self.labels[offset:end], self.classes, source)

    def float_images(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """All images as float32 (N, 3, H, W) in [0, 1] on `device`."""
        return to_float(self.images.to(device))


def in_memory(images, labels, classes=None, label: str = "images given in memory") -> LabeledImages:
    """Images a Python caller holds, as a split whose provenance is their content digest.

    images: uint8 (N, 3, H, W) or (N, H, W, 3) in [0, 255], or float (N, 3, H, W) in [0, 1] that
    hold 8-bit images (multiples of 1/255, as torchvision's ToTensor gives: converted exactly),
    tensor or array; labels: ints (N,) in [0, len(classes)); classes default to '0'..'K-1' for
    K = max label + 1 (at least 10)."""
    images = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    if images.is_floating_point():
        images = _float_to_uint8(images)
    if images.dtype != torch.uint8:
        raise UserError(f"images must be uint8 in [0, 255] or float in [0, 1] (got {images.dtype}); "
                        f"convert with (x * 255).round().to(torch.uint8)")
    if images.ndim == 4 and images.shape[-1] == 3 and images.shape[1] != 3:
        images = images.permute(0, 3, 1, 2)
    check_images(images.permute(0, 2, 3, 1).cpu().numpy(), "the given images")
    raw = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    checked = check_labels(raw, len(images), len(classes) if classes is not None else None, "the given labels")
    num_classes = len(classes) if classes is not None else max(10, int(checked.max()) + 1)
    labels = torch.from_numpy(checked)
    images = images.contiguous().cpu()
    digest = tensors_sha256({"images": images, "labels": labels})
    classes = tuple(classes) if classes is not None else tuple(str(k) for k in range(num_classes))
    return LabeledImages(images, labels, classes, {"kind": "memory", "sha256": digest, "label": label})


def _float_to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Float images in [0, 1] (N, 3, H, W) as the uint8 they encode; values that are not multiples
    of 1/255 (not 8-bit images) are refused rather than silently rounded."""
    x = images.detach().cpu().double()
    if not bool(torch.isfinite(x).all()) or x.numel() and (x.min() < 0 or x.max() > 1):
        raise UserError("float images must be finite and in [0, 1] (torch's convention); scale them "
                        "(e.g. x / 255) or pass uint8 images in [0, 255]")
    levels = x * 255
    if x.numel() and float((levels - levels.round()).abs().max()) > 1e-3:
        raise UserError("float images must hold 8-bit images (multiples of 1/255, as ToTensor gives): "
                        "energybench evaluates 8-bit pixels; quantise with (x * 255).round() / 255 first")
    return levels.round().to(torch.uint8)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [0, 1], same shape."""
    return images.float().div_(255.0)


MIN_SIDE = 8  # the smallest image side a model here can take (three stride-2 stages)


def check_images(images: np.ndarray, where: str) -> None:
    """Images must be uint8 (N, H, W, 3) RGB of one size (any H, W >= MIN_SIDE; CIFAR's 32x32, the
    64x64 ImageNet subset), N >= 1."""
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3 \
            or min(images.shape[1:3]) < MIN_SIDE:
        raise UserError(f"{where}: images must be uint8 (N, H, W, 3) RGB with sides of at least {MIN_SIDE}, "
                        f"got {images.dtype} {tuple(images.shape)}; convert them first")
    if len(images) == 0:
        raise UserError(f"{where}: holds no images; give a source with at least one image per split")


def check_labels(labels: np.ndarray, n: int, num_classes: int | None, where: str) -> np.ndarray:
    """Labels as int64 (N,) in [0, num_classes); integral floats are accepted, NaN, fractions,
    negatives and out-of-range values are errors."""
    if labels.ndim != 1 or len(labels) != n:
        raise UserError(f"{where}: labels must be (N,) with N={n}, got {tuple(labels.shape)}")
    if labels.dtype.kind == "f":
        if not np.isfinite(labels).all() or (labels != np.round(labels)).any():
            raise UserError(f"{where}: labels must be whole class indices, found NaN or fractions")
    elif labels.dtype.kind not in "iu":
        raise UserError(f"{where}: labels must be integers, got dtype {labels.dtype}")
    labels = labels.astype(np.int64)
    if n and labels.min() < 0:
        raise UserError(f"{where}: labels must be >= 0, found {int(labels.min())}")
    if num_classes is not None and n and labels.max() >= num_classes:
        raise UserError(f"{where}: label {int(labels.max())} is out of range for {num_classes} classes")
    return labels
