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

import hashlib
import io
import json
import os
import pickle
import re
import shutil
import sys
import tarfile
import tokenize
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from energybench.core.errors import UserError
from energybench.core.hashing import file_sha256, tensors_sha256, tree_sha256
from energybench.core.locking import FolderLock

SPLITS = ("train", "test")
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
TORCHVISION_FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}

# Sources whose bytes we know: sha256 -> human label that results must carry.
KNOWN_SOURCES = {
    "b27b0ac43712cda5a4f8785e9cf7526458ddd8b3685d1e891a6f795bf4ef5c8e": "CIFAR-10 (JPEG q75 copy)",
    "4c7117781c9b83912783d20bddb037d5b4ddb449294bb795258504e67e83de31": (
        "CIFAR-10 test, exact pixels, first 1,017 images"
    ),
}
CACHE_FORMAT = 2  # 2: each array's sha256 in meta.json, checked on every read


def energybench_home() -> Path:
    """$ENERGYBENCH_HOME, default ~/.energybench: data/ and cache/ live here."""
    return Path(os.environ.get("ENERGYBENCH_HOME", Path.home() / ".energybench")).expanduser()


def data_home() -> Path:
    return energybench_home() / "data"


def cache_dir() -> Path:
    return energybench_home() / "cache"


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


# ----------------------------------------------------------------------------- spec resolution


@dataclass(frozen=True)
class Source:
    kind: str  # "npz" | "torchvision" | "image-tree" | "image-tar"
    path: Path
    dataset: str | None = None  # "cifar10" / "cifar100" where known


def resolve_source(spec: str | os.PathLike | None) -> Source:
    """Turn a data spec (see module docstring) into a Source, or fail with a one-line reason."""
    spec = "cifar10" if spec is None else str(spec)
    if spec in TORCHVISION_FOLDERS:
        home = data_home()
        imported = home / f"{spec}.npz"
        if imported.is_file():
            return Source("npz", imported, spec)
        if (home / TORCHVISION_FOLDERS[spec]).is_dir():
            return Source("torchvision", home, spec)
        raise UserError(
            f"no {spec} data in {home} (looked for {imported.name} and {TORCHVISION_FOLDERS[spec]}/); "
            f"run `energybench data import PATH` with a local copy, `energybench data import {spec} "
            f"--download` when online, or pass --data PATH"
        )
    path = Path(spec).expanduser()
    if not path.exists():
        raise UserError(
            f"data not found: {path} does not exist; pass --data with a torchvision CIFAR folder, "
            f"an image-folder tree or .tar/.tar.gz of one, or an .npz"
        )
    if path.is_file():
        name = path.name.lower()
        if name.endswith(".npz"):
            return Source("npz", path)
        if name.endswith((".tar", ".tar.gz", ".tgz")):
            return Source("image-tar", path)
        raise UserError(f"unsupported data file {path}: expected .npz, .tar, .tar.gz or .tgz")
    for dataset, folder in TORCHVISION_FOLDERS.items():
        if path.name == folder:
            return Source("torchvision", path.parent, dataset)
        if (path / folder).is_dir():
            return Source("torchvision", path, dataset)
    if any((path / split).is_dir() for split in SPLITS):
        return Source("image-tree", path)
    nested = [p for p in path.iterdir() if p.is_dir() and any((p / s).is_dir() for s in SPLITS)]
    if len(nested) == 1:
        return Source("image-tree", nested[0])
    raise UserError(
        f"{path} is not a data source: expected {'/'.join(TORCHVISION_FOLDERS.values())}, "
        f"train/ and test/ class folders, or one folder holding them"
    )


def load_split(spec: str | os.PathLike | None, split: str, download: bool = False) -> LabeledImages:
    """Load one split ('train' or 'test') of a data spec, decoding once and caching."""
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; use train or test")
    source = resolve_source(spec)
    if source.kind == "torchvision":
        return _load_torchvision(source, split, download)
    arrays, meta = _cached_decode(source)
    if f"{split}_images" not in arrays:
        have = [s for s in SPLITS if f"{s}_images" in arrays]
        raise UserError(
            f"{source.path} has no {split} split (it holds: {', '.join(have) or 'nothing'}); "
            f"give a source with a {split} split via --data"
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


def _content_key(source: Source) -> str:
    """sha256 of a file source; for folders a hash of names, sizes and mtimes."""
    if source.path.is_file():
        return file_sha256(source.path)
    return "tree-" + tree_sha256(source.path)


def _label_for(source: Source, key: str, classes: list[str], lossy: bool) -> str:
    if key in KNOWN_SOURCES:
        return KNOWN_SOURCES[key]
    name = {10: "CIFAR-10", 100: "CIFAR-100"}.get(len(classes), f"{len(classes)}-class images")
    suffix = " (JPEG copy; lossy)" if lossy else ""
    return f"{name}{suffix} from {source.kind} {source.path.name}"


def _cached_decode(source: Source) -> tuple[dict[str, np.ndarray], dict]:
    """Decoded arrays {split_images: (N,H,W,3) uint8, split_labels: (N,)} and metadata."""
    key = _content_key(source)
    cache = cache_dir() / f"{key[:40]}.v{CACHE_FORMAT}"
    found = _read_cache(cache)
    if found is not None:
        return found
    # One process decodes; others (a second command, torchrun ranks) wait for it, then read.
    with FolderLock(cache_dir(), f"{key[:40]}.lock", wait=True,
                    waiting=f"waiting for another process to decode {source.path.name}"):
        found = _read_cache(cache)
        if found is not None:
            return found
        return _decode_into_cache(source, key, cache)


def _array_sha256(arr: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(arr).view(np.uint8).reshape(-1).data).hexdigest()


def _read_cache(cache: Path) -> tuple[dict[str, np.ndarray], dict] | None:
    """A complete, intact cache entry (meta.json is written last and holds each array's sha256),
    or None. A damaged entry (unreadable meta, a truncated or edited array) is removed, with one
    line saying so, and decoded again by the caller."""
    meta_path = cache / "meta.json"
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        arrays = {name: np.load(cache / f"{name}.npy", allow_pickle=False) for name in meta["arrays"]}
        intact = all(_array_sha256(arrays[name]) == meta["sha256"][name] for name in meta["arrays"])
    except (OSError, ValueError, KeyError, TypeError, EOFError, RecursionError):
        intact = False
    if intact:
        return arrays, meta
    print(f"energybench: the decoded-data cache {cache.name} is damaged; decoding the source again",
          file=sys.stderr, flush=True)
    shutil.rmtree(cache, ignore_errors=True)
    return None


def _decode_into_cache(source: Source, key: str, cache: Path) -> tuple[dict[str, np.ndarray], dict]:
    label = None
    if source.kind == "npz":
        arrays, classes, lossy, label = _decode_npz(source.path)
    else:
        arrays, classes, lossy = _decode_image_tree(source)
    provenance = {
        "kind": source.kind,
        "path": str(source.path.resolve()),
        "sha256" if source.path.is_file() else "tree_hash": key,
        "label": label or _label_for(source, key, classes, lossy),
    }
    meta = {"arrays": sorted(arrays), "classes": classes, "provenance": provenance,
            "sha256": {name: _array_sha256(arr) for name, arr in arrays.items()}}
    _write_cache(cache, arrays, meta)
    return arrays, meta


def _write_cache(cache: Path, arrays: dict[str, np.ndarray], meta: dict) -> None:
    """Write arrays then meta.json, atomically per file; meta last marks the cache complete."""
    from energybench.core.atomic import atomic_output, write_text_atomic

    for name, arr in arrays.items():
        with atomic_output(cache / f"{name}.npy") as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, np.ascontiguousarray(arr))
    write_text_atomic(json.dumps(meta, indent=1), cache / "meta.json")


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


def _decode_npz(path: Path) -> tuple[dict[str, np.ndarray], list[str], bool, str | None]:
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


def _decode_image_tree(source: Source) -> tuple[dict[str, np.ndarray], list[str], bool]:
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


def _load_torchvision(source: Source, split: str, download: bool) -> LabeledImages:
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
        "tree_hash": _content_key(Source("torchvision", folder)),
        "label": {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}[dataset],
        "split": split,
    }
    images = torch.from_numpy(rows.reshape(-1, 3, 32, 32).copy())
    return LabeledImages(images, torch.from_numpy(labels), classes, provenance)


# ----------------------------------------------------------------------------- import


def download_torchvision(dataset: str) -> Path:
    """Let torchvision download `dataset` (cifar10/cifar100) into the data home; needs internet."""
    folder = data_home()
    folder.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        _load_torchvision(Source("torchvision", folder, dataset), split, download=True)
    return folder / TORCHVISION_FOLDERS[dataset]


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
