"""Where data lives and what a data spec names: the data home, the known sources, and
`resolve_source` (a spec -> a `Source`: npz, torchvision folder, image tree or its tar).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from energybench.core.errors import UserError, option
from energybench.core.hashing import file_sha256, tree_sha256

SPLITS = ("train", "test")


CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)


TORCHVISION_FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


# Sources whose bytes we know: sha256 -> human label that results must carry.
KNOWN_SOURCES = {
    "b27b0ac43712cda5a4f8785e9cf7526458ddd8b3685d1e891a6f795bf4ef5c8e": "CIFAR-10 (JPEG q75 copy)",
    # the file's size stays out of its label: a record's n says how many of its images were used
    "4c7117781c9b83912783d20bddb037d5b4ddb449294bb795258504e67e83de31": "CIFAR-10 test, exact pixels",
}


def energybench_home() -> Path:
    """$ENERGYBENCH_HOME, default ~/.energybench: data/ and cache/ live here."""
    return Path(os.environ.get("ENERGYBENCH_HOME", Path.home() / ".energybench")).expanduser()


def data_home() -> Path:
    return energybench_home() / "data"


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
            f"--download` when online, or pass {option('data', 'PATH')}"
        )
    path = Path(spec).expanduser()
    if not path.exists():
        raise UserError(
            f"data not found: {path} does not exist; pass {option('data')} with a torchvision CIFAR folder, "
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


def content_key(source: Source) -> str:
    """sha256 of a file source; for folders a hash of names, sizes and mtimes."""
    if source.path.is_file():
        return file_sha256(source.path)
    return "tree-" + tree_sha256(source.path)
