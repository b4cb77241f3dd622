"""Labelled RGB images (CIFAR-10/100, or any image folder or .npz at one size: e.g. a 64x64
ImageNet subset) as uint8 tensors with labels, from any of three kinds of source.

A *data spec* is one of
  - a dataset name, ``cifar10`` or ``cifar100``: the data home ($ENERGYBENCH_HOME/data, default
    ~/.energybench/data) is searched for ``<name>.npz`` (written by ``energybench data import``)
    and then for torchvision's folder (``cifar-10-batches-py`` / ``cifar-100-python``), which
    torchvision downloads there when ``download=True`` and the machine is online;
  - a torchvision folder (or its parent);
  - an image-folder tree ``<root>/{train,test}/<class>/<file>`` or a .tar/.tar.gz of one (class
    names from the folders, sorted; every image of one size);
  - an .npz with ``images`` (N,H,W,3 uint8, any size: CIFAR's 32x32, a 64x64 ImageNet subset) and
    ``labels`` (a test split), or with
    ``train_images``/``train_labels``/``test_images``/``test_labels``.

Images come back as uint8 NCHW tensors; decoding happens once per source and is cached under
$ENERGYBENCH_HOME/cache, keyed by the source's content. Every split carries a provenance dict
(kind, path, sha256, a human label) that results record.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from energybench.core.errors import UserError, option
from energybench.data.cache import cached_decode
from energybench.data.formats import load_torchvision
from energybench.data.images import LabeledImages, in_memory
from energybench.data.spec import SPLITS, data_home, resolve_source

# ----------------------------------------------------------------------------- spec resolution


def load_split(spec: str | os.PathLike | None, split: str, download: bool = False) -> LabeledImages:
    """Load one split ('train' or 'test') of a data spec, decoding once and caching."""
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; use train or test")
    source = resolve_source(spec)
    if source.kind == "torchvision":
        return load_torchvision(source, split, download)
    arrays, meta = cached_decode(source)
    if f"{split}_images" not in arrays:
        have = [s for s in SPLITS if f"{s}_images" in arrays]
        raise UserError(
            f"{source.path} has no {split} split (it holds: {', '.join(have) or 'nothing'}); "
            f"give a source with a {split} split via {option('data')}"
        )
    images = torch.from_numpy(np.ascontiguousarray(arrays[f"{split}_images"])).permute(0, 3, 1, 2)
    labels = torch.from_numpy(arrays[f"{split}_labels"].astype(np.int64))
    provenance = dict(meta["provenance"], split=split)
    return LabeledImages(images.contiguous(), labels, tuple(meta["classes"]), provenance)


def available_splits(spec: str | os.PathLike | None) -> dict[str, "LabeledImages | UserError"]:
    """Each split of a spec: its data, or the UserError that says why it is absent."""
    out: dict[str, LabeledImages | UserError] = {}
    for split in SPLITS:
        try:
            out[split] = load_split(spec, split)
        except UserError as exc:
            out[split] = exc
    return out


# ----------------------------------------------------------------------------- decoding + cache


def data_identity(source: dict) -> dict:
    """What identifies a split's content for caches and record keys: its provenance without the
    path it happens to sit at (content hash, label, split, subset)."""
    return {k: v for k, v in source.items() if k != "path"}


# ----------------------------------------------------------------------------- import


def import_source(spec: str, name: str = "cifar10") -> Path:
    """Decode any source into the data home as `<name>.npz` (train and test) and return its path."""
    found = available_splits(spec)
    splits = {k: v for k, v in found.items() if isinstance(v, LabeledImages)}
    if not splits:
        raise found["train"]
    first = next(iter(splits.values()))
    out = data_home() / f"{name}.npz"
    out.parent.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split, data in splits.items():
        arrays[f"{split}_images"] = data.images.permute(0, 2, 3, 1).numpy()
        arrays[f"{split}_labels"] = data.labels.numpy()
    label = first.source.get("label", "")
    from energybench.core.atomic import atomic_output

    with atomic_output(out) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, label_names=np.array(first.classes), lossy=np.array("JPEG" in label),
                     source_label=np.array(label), **arrays)
    return out


def as_split(given, split: str, label: str | None = None) -> LabeledImages | None:
    """One split from any form a caller gives: LabeledImages as they are, an (images, labels) pair
    held in memory (`in_memory`, named `label`), or a data spec (`load_split`); None stays None."""
    if given is None or isinstance(given, LabeledImages):
        return given
    if isinstance(given, tuple) and len(given) == 2:
        return in_memory(*given, **({"label": label} if label else {}))
    return load_split(given, split)
