"""The decoded-data cache: each source decoded once into $ENERGYBENCH_HOME/cache, keyed by its
content, each array's sha256 checked on every read, damaged entries rebuilt; one process decodes
while others (a second command, torchrun ranks) wait.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np

from energybench.core.locking import FolderLock
from energybench.data.formats import decode_image_tree, decode_npz
from energybench.data.spec import KNOWN_SOURCES, Source, content_key, energybench_home

CACHE_FORMAT = 2  # 2: each array's sha256 in meta.json, checked on every read


def cache_dir() -> Path:
    return energybench_home() / "cache"


def _label_for(source: Source, key: str, classes: list[str], lossy: bool) -> str:
    if key in KNOWN_SOURCES:
        return KNOWN_SOURCES[key]
    name = {10: "CIFAR-10", 100: "CIFAR-100"}.get(len(classes), f"{len(classes)}-class images")
    suffix = " (JPEG copy; lossy)" if lossy else ""
    return f"{name}{suffix} from {source.kind} {source.path.name}"


def cached_decode(source: Source) -> tuple[dict[str, np.ndarray], dict]:
    """Decoded arrays {split_images: (N,H,W,3) uint8, split_labels: (N,)} and metadata."""
    key = content_key(source)
    cache = cache_dir() / f"{key[:40]}.v{CACHE_FORMAT}"
    found = _read_cache(cache)
    if found is None:
        # One process decodes; others (a second command, torchrun ranks) wait for it, then read.
        with FolderLock(cache_dir(), f"{key[:40]}.lock", wait=True,
                        waiting=f"waiting for another process to decode {source.path.name}"):
            found = _read_cache(cache) or _decode_into_cache(source, key, cache)
    arrays, meta = found
    # the entry is shared by every copy of the same content: the path is the one given this time,
    # and a known source's label is today's (an entry decoded by an older version keeps its arrays)
    provenance = {**meta["provenance"], "path": str(source.path.resolve())}
    if key in KNOWN_SOURCES:
        provenance["label"] = KNOWN_SOURCES[key]
    return arrays, {**meta, "provenance": provenance}


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
        arrays, classes, lossy, label = decode_npz(source.path)
    else:
        arrays, classes, lossy = decode_image_tree(source)
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
