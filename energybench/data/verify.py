"""`energybench data verify`: counts, shapes, label balance, checksums, exact-pixel agreement."""

from __future__ import annotations

from pathlib import Path

import torch

from energybench import data as datalib
from energybench.core.errors import UserError, option
from energybench.core.hashing import file_sha256

EXPECTED_COUNTS = {10: {"train": 50_000, "test": 10_000}, 100: {"train": 50_000, "test": 10_000}}


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of uint8 images a, b (N, C, H, W)."""
    mse = (a.double() - b.double()).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(255.0**2 / mse.clamp_min(1e-12))


def verify_source(spec: str | None, reference: Path | None = None) -> tuple[str, bool]:
    """A text report and whether every check passed."""
    lines, ok = [], True
    source = datalib.resolve_source(spec)
    lines.append(f"source: {source.kind} {source.path}")
    if source.path.is_file():
        digest = file_sha256(source.path)
        known = datalib.KNOWN_SOURCES.get(digest)
        lines.append(f"sha256 {digest}: {'known: ' + known if known else 'not a known file'}")
    test = None
    for split, d in datalib.available_splits(spec).items():
        if isinstance(d, UserError):
            lines.append(f"{split}: absent ({d})")
            continue
        counts = torch.bincount(d.labels, minlength=d.num_classes)
        expect = EXPECTED_COUNTS.get(d.num_classes, {}).get(split)
        full = expect is not None and len(d) == expect
        balanced = bool((counts == counts[0]).all())
        lines.append(
            f"{split}: {len(d)} images, shape {tuple(d.images.shape[1:])}, dtype {d.images.dtype}, "
            f"labels {int(d.labels.min())}..{int(d.labels.max())}, per class {counts.min().item()}"
            f"-{counts.max().item()} ({'balanced' if balanced else 'unbalanced'})"
            f"{'' if full or expect is None else f'; a subset of the usual {expect}'}"
        )
        if d.images.dtype != torch.uint8 or d.labels.min() < 0 or d.labels.max() >= d.num_classes:
            ok = False
            lines.append(f"  FAIL: {split} has wrong dtype or labels out of range")
        if split == "test":
            test = d
    if reference is not None and test is not None:
        ref = datalib.load_split(reference, "test")  # the same checks as any data: one line if it is not
        ref_images, ref_labels = ref.images, ref.labels
        if ref_images.shape[1:] != test.images.shape[1:]:
            size = "x".join(map(str, test.images.shape[2:]))
            raise UserError(f"{option('reference', reference.name)} holds {'x'.join(map(str, ref_images.shape[2:]))} images "
                            f"but the data's are {size}; give a reference of the same images")
        k = min(len(ref_labels), len(test))
        same_labels = bool((ref_labels[:k] == test.labels[:k]).all())
        values = psnr(ref_images[:k], test.images[:k])
        lines.append(
            f"reference {reference.name}: first {k} test labels {'match' if same_labels else 'DIFFER'}; "
            f"PSNR vs exact pixels mean {values.mean():.1f} dB (min {values.min():.1f}, "
            f"max {values.max():.1f}; inf = identical)"
        )
        ok &= same_labels
    return "\n".join(lines), ok
