"""Digests that identify things: files, weight tensors, and JSON-able descriptions."""

from __future__ import annotations

import hashlib
import json
import os

import torch


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def tensors_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over a state dict: every key, dtype, shape and the tensor's bytes, in key order.
    Equal for equal weights whatever the file they sit in; any flipped bit changes it."""
    digest = hashlib.sha256()
    for key in sorted(tensors):
        t = tensors[key].detach().cpu().contiguous()
        digest.update(f"{key}|{t.dtype}|{tuple(t.shape)}\n".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def text_sha256(text: str) -> str:
    """sha256 of a text's UTF-8 bytes (hex)."""
    return hashlib.sha256(text.encode()).hexdigest()


def tree_sha256(folder: str | os.PathLike) -> str:
    """A folder's digest from its files' relative names, sizes and modification times (cheap:
    contents are not read; any edit, addition or removal changes it)."""
    from pathlib import Path

    folder = Path(folder)
    digest = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            st = p.stat()
            digest.update(f"{p.relative_to(folder)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def json_key(obj, length: int = 12) -> str:
    """A short digest of a JSON-able object (sorted keys; floats by repr)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:length]
