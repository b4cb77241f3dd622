"""The decoders of the three kinds of source: .npz, image trees (a folder or a tar of one), and
torchvision's CIFAR batches (read by an unpickler that accepts numpy arrays, lists and bytes only).
"""

from __future__ import annotations

import io
import pickle
import re
import tarfile
import tokenize
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch

from energybench.core.errors import UserError
from energybench.data.images import LabeledImages, check_images, check_labels
from energybench.data.spec import (
    CIFAR10_CLASSES, IMAGE_SUFFIXES, SPLITS, TORCHVISION_FOLDERS, Source, content_key, data_home,
)


def decode_npz(path: Path) -> tuple[dict[str, np.ndarray], list[str], bool, str | None]:
    try:
        with open(path, "rb") as fh:
            is_zip = fh.read(4) == b"PK\x03\x04"
        with np.load(path, allow_pickle=False) as npz:
            content = {name: npz[name] for name in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error,
            SyntaxError, tokenize.TokenError, KeyError, IndexError, TypeError, NotImplementedError) as exc:
        # numpy parses a member's header with Python's tokenizer: a damaged header raises
        # SyntaxError or TokenError rather than ValueError
        if not is_zip:
            reason = "it is not an .npz (zip) file"
        elif "allow_pickle" in str(exc):
            reason = "it holds Python objects, not plain arrays"
        else:
            reason = f"a damaged member, {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'unreadable'}"
        raise UserError(f"cannot read {path} as .npz ({reason}); re-save it with numpy arrays "
                        f"of images and labels") from None
    files = set(content)
    arrays = {}
    if {"images", "labels"} <= files and {"test_images", "test_labels"} <= files:
        raise UserError(f"{path} holds both images/labels and test_images/test_labels: two test sets; keep "
                        f"one pair (images/labels for a test set alone, or the train_/test_ arrays)")
    if {"images", "labels"} <= files:
        arrays["test_images"], arrays["test_labels"] = content["images"], content["labels"]
    for split in SPLITS:
        if {f"{split}_images", f"{split}_labels"} <= files:
            arrays[f"{split}_images"], arrays[f"{split}_labels"] = (
                content[f"{split}_images"], content[f"{split}_labels"])
    if not arrays:
        raise UserError(
            f"{path} has neither images/labels nor train_images/train_labels/test_images/test_labels"
        )
    classes = None
    if "label_names" in files:
        names = content["label_names"]
        if names.ndim != 1 or names.dtype.kind not in "US":
            raise UserError(f"{path}: label_names must be a 1-d array of class names, got shape "
                            f"{names.shape} dtype {names.dtype}")
        classes = [str(c) for c in names]
    for split in SPLITS:
        if f"{split}_images" in arrays:
            where = f"{path} ({split})"
            check_images(arrays[f"{split}_images"], where)
            arrays[f"{split}_labels"] = check_labels(arrays[f"{split}_labels"],
                                                     len(arrays[f"{split}_images"]),
                                                     None if classes is None else len(classes), where)
    sizes = {tuple(arrays[k].shape[1:3]) for k in arrays if k.endswith("_images")}
    if len(sizes) > 1:
        raise UserError(f"{path}: its train and test images differ in size ({' and '.join('x'.join(map(str, s)) for s in sorted(sizes))}); "
                        f"give both splits at one size")
    if classes is None:
        top = max(int(arrays[k].max()) for k in arrays if k.endswith("_labels")) + 1
        classes = list(CIFAR10_CLASSES) if top <= 10 else [str(i) for i in range(top)]
    lossy = bool(content["lossy"]) if "lossy" in files else False
    label = str(content["source_label"]) + " (imported)" if "source_label" in files else None
    return arrays, classes, lossy, label


_TREE_PATTERN = re.compile(r"^(?:.*/)?(train|test)/([^/]+)/([^/]+)$")


def _tree_members(source: Source):
    """Yield (split, class, filename, bytes) for every image of a tree or tar."""
    if source.kind == "image-tar":
        try:
            with tarfile.open(source.path, "r:*") as tar:
                for member in tar:
                    match = _TREE_PATTERN.match(member.name)
                    if member.isfile() and match and Path(match[3]).suffix.lower() in IMAGE_SUFFIXES:
                        yield match[1], match[2], match[3], tar.extractfile(member).read()
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise UserError(f"cannot read {source.path} as a tar archive ({exc}); is it complete?") from None
    else:
        for split in SPLITS:
            for path in sorted((source.path / split).glob("*/*")):
                if path.suffix.lower() in IMAGE_SUFFIXES:
                    yield split, path.parent.name, path.name, path.read_bytes()


def decode_image_tree(source: Source) -> tuple[dict[str, np.ndarray], list[str], bool]:
    """Decode `<root>/{train,test}/<class>/<file>`; classes sorted by name (CIFAR's label order).

    Order within a split: by the integer file stem when all stems are distinct integers (the
    official test order for the JPEG copy), else by (class, file name).
    """
    from PIL import Image, UnidentifiedImageError

    from energybench.core.progress import progress

    found: dict[str, list[tuple[str, str, np.ndarray]]] = {s: [] for s in SPLITS}
    lossy, first = False, None
    for split, cls, name, blob in progress(_tree_members(source), desc=f"decoding {source.path.name}"):
        try:
            with Image.open(io.BytesIO(blob)) as img:
                lossy |= img.format == "JPEG"
                pixels = np.asarray(img.convert("RGB"), dtype=np.uint8)
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            why = "not an image file" if isinstance(exc, UnidentifiedImageError) else str(exc)
            raise UserError(f"{source.path}: {split}/{cls}/{name} is not a readable image ({why}); "
                            f"remove or replace it") from None
        if first is None:
            first = (f"{split}/{cls}/{name}", pixels.shape)
        elif pixels.shape != first[1]:
            raise UserError(f"{source.path}: {split}/{cls}/{name} is {pixels.shape[1]}x{pixels.shape[0]} but "
                            f"{first[0]} is {first[1][1]}x{first[1][0]}; every image of a dataset must have "
                            f"one size (resize them first)")
        found[split].append((cls, name, pixels))
    classes = sorted({cls for items in found.values() for cls, _, _ in items})
    if not classes:
        raise UserError(f"no images found in {source.path}; expected <root>/{{train,test}}/<class>/<image>")
    index = {c: i for i, c in enumerate(classes)}
    arrays = {}
    for split, items in found.items():
        if not items:
            continue
        stems = [Path(name).stem for _, name, _ in items]
        if all(s.isdigit() for s in stems) and len(set(map(int, stems))) == len(stems):
            items = [it for _, it in sorted(zip(map(int, stems), items), key=lambda p: p[0])]
        else:
            items = sorted(items, key=lambda it: (it[0], it[1]))
        arrays[f"{split}_images"] = np.stack([it[2] for it in items])
        arrays[f"{split}_labels"] = np.array([index[it[0]] for it in items], dtype=np.int64)
    return arrays, classes, lossy


_BATCH_FILES = {
    "cifar10": {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"],
                "meta": ("batches.meta", "label_names"), "labels": "labels"},
    "cifar100": {"train": ["train"], "test": ["test"], "meta": ("meta", "fine_label_names"),
                 "labels": "fine_labels"},
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles the official CIFAR batches (dicts of numpy arrays, lists, bytes) and refuses
    every other global, so a doctored batch file cannot run code."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar")}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing global {module}.{name}")


def _read_batch(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            batch = _NumpyOnlyUnpickler(fh, encoding="latin1").load()
    except FileNotFoundError:
        raise UserError(f"missing {path.name} in {path.parent}; is the CIFAR folder complete?") from None
    except Exception as exc:  # arbitrary bytes fail anywhere in the unpickler (IndexError, KeyError, ...)
        raise UserError(f"cannot read {path} as a CIFAR batch ({type(exc).__name__}: {exc})") from None
    if not isinstance(batch, dict):
        raise UserError(f"cannot read {path} as a CIFAR batch (it holds a {type(batch).__name__}, not a dict)")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}


def _batch_field(batch: dict, key: str, path: Path):
    """batch[key], or a one-line error naming the file and the missing field."""
    if key not in batch:
        raise UserError(f"cannot read {path} as a CIFAR batch (it has no {key!r} field; it has "
                        f"{', '.join(sorted(map(str, batch))) or 'none'})")
    return batch[key]


def load_torchvision(source: Source, split: str, download: bool) -> LabeledImages:
    """Read torchvision's `cifar-10-batches-py` / `cifar-100-python` folder (the official python
    batches); with download=True let torchvision fetch it first."""
    dataset = source.dataset or "cifar10"
    if download:
        import torchvision

        cls = torchvision.datasets.CIFAR10 if dataset == "cifar10" else torchvision.datasets.CIFAR100
        try:
            cls(str(source.path), train=(split == "train"), download=True)
        except (RuntimeError, OSError) as exc:
            raise UserError(f"torchvision could not download {dataset} to {source.path}: {exc}") from None
    layout = _BATCH_FILES[dataset]
    folder = source.path / TORCHVISION_FOLDERS[dataset]
    files = [folder / name for name in layout[split]]
    batches = [_read_batch(f) for f in files]
    rows = np.concatenate([np.asarray(_batch_field(b, "data", f), dtype=np.uint8) for b, f in zip(batches, files)])
    if rows.ndim != 2 or rows.shape[1] != 3 * 32 * 32:
        raise UserError(f"{folder}: batch rows must hold 3072 bytes, got shape {rows.shape}")
    meta_file, meta_key = layout["meta"]
    # names are str in the official (Python 2) pickles read as latin-1, bytes in copies re-pickled by Python 3
    classes = tuple(c.decode("latin1") if isinstance(c, bytes) else str(c)
                    for c in _batch_field(_read_batch(folder / meta_file), meta_key, folder / meta_file))
    labels = check_labels(np.concatenate([np.asarray(_batch_field(b, layout["labels"], f))
                                          for b, f in zip(batches, files)]),
                          len(rows), len(classes), str(folder))
    provenance = {
        "kind": "torchvision",
        "path": str(folder.resolve()),
        "tree_hash": content_key(Source("torchvision", folder)),
        "label": {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}[dataset],
        "split": split,
    }
    images = torch.from_numpy(rows.reshape(-1, 3, 32, 32).copy())
    return LabeledImages(images, torch.from_numpy(labels), classes, provenance)


def download_torchvision(dataset: str) -> Path:
    """Let torchvision download `dataset` (cifar10/cifar100) into the data home; needs internet."""
    folder = data_home()
    folder.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        load_torchvision(Source("torchvision", folder, dataset), split, download=True)
    return folder / TORCHVISION_FOLDERS[dataset]
