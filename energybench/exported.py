"""External models as `torch.export` programs (.pt2) that map [0, 1] NCHW images to logits,
loaded without ever unpickling anything that could run code.

`torch.export.load` unpickles weights and constants marked `use_pickle` with
`torch.load(weights_only=False)`, custom and opaque objects with pickle, and retries the sample
inputs with an unsafe load when the safe one fails. So the archive is inspected first: only raw
tensor weights and constants, a JSON program, and sample inputs that load with
`weights_only=True` are accepted; anything else is refused with a one-line reason. The load itself
then runs with every pickle entry point replaced by one that refuses (defence in depth).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
import zipfile
from pathlib import Path
from unittest import mock

import torch
import torch.nn as nn

from energybench.errors import UserError

# Top-level folders (below the archive's root folder) a plain exported program consists of.
_ALLOWED = ("archive_format", "archive_version", "byteorder", ".data/", "models/", "data/weights/",
            "data/constants/", "data/sample_inputs/", "extra/")
_TENSOR_CONSTANT_PREFIX = "tensor_"


class ExportedClassifier(nn.Module):
    """A `torch.export` program mapping [0, 1] NCHW images to logits, as an nn.Module.

    Programs exported with a static batch size are run in chunks of that size (the last chunk
    padded). train()/eval() only flip this wrapper's flag: an exported graph has one mode.
    """

    def __init__(self, program_module: nn.Module, fixed_batch: int | None):
        super().__init__()
        self.program = program_module
        self.fixed_batch = fixed_batch

    def train(self, mode: bool = True):
        self.training = mode
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fixed_batch is None or len(x) == self.fixed_batch:
            return self.program(x)
        outs = []
        for start in range(0, len(x), self.fixed_batch):
            chunk = x[start:start + self.fixed_batch]
            pad = self.fixed_batch - len(chunk)
            if pad:
                chunk = torch.cat([chunk, chunk[-1:].expand(pad, *chunk.shape[1:])])
            outs.append(self.program(chunk)[: self.fixed_batch - pad])
        return torch.cat(outs)


def _refuse(path: Path, why: str) -> UserError:
    return UserError(f"refusing {path}: {why}; re-export the model with torch.export.save from plain "
                     f"tensors (no tensor subclasses or custom objects)")


def inspect_archive(path: Path) -> None:
    """Raise a UserError unless the .pt2 archive holds only data that loads without unpickling
    code: JSON configs, raw tensor payloads, and sample inputs readable with weights_only=True."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise UserError(f"cannot load {path} as a torch.export program (not a zip archive: {exc})") from None
    with archive:
        names = archive.namelist()
        roots = {n.split("/", 1)[0] for n in names}
        if len(roots) != 1 or not any(n.endswith("/archive_format") for n in names):
            raise UserError(f"cannot load {path} as a torch.export program (no archive_format: not "
                            f"a .pt2 written by torch.export.save on torch >= 2.6)")
        root = roots.pop() + "/"
        for name in names:
            inner = name[len(root):]
            if inner and not inner.startswith(_ALLOWED):
                raise _refuse(path, f"it holds {inner!r}, which is not part of a plain exported program")
            if inner.startswith(("data/weights/", "data/constants/")) and inner.endswith(".pt"):
                raise _refuse(path, f"it holds the legacy pickled payload {inner!r}")
        for config in (n for n in names if n.endswith(("_weights_config.json", "_constants_config.json"))):
            try:
                entries = json.loads(archive.read(config))["config"]
            except (ValueError, KeyError, TypeError):
                raise UserError(f"cannot read {path}: {config} is not a valid payload config") from None
            for fqn, meta in entries.items():
                if meta.get("use_pickle"):
                    raise _refuse(path, f"{fqn!r} is stored pickled (loading it could run code)")
                if "constants" in config and not str(meta.get("path_name", "")).startswith(_TENSOR_CONSTANT_PREFIX):
                    raise _refuse(path, f"constant {fqn!r} is a Python or TorchScript object")
        for sample in (n for n in names if n.startswith(root + "data/sample_inputs/")):
            try:
                torch.load(io.BytesIO(archive.read(sample)), weights_only=True)
            except Exception:  # noqa: BLE001  anything but plain tensors and containers
                raise _refuse(path, f"its sample inputs ({sample[len(root):]}) hold Python objects") from None


def _no_unpickling(*args, **kwargs):
    raise pickle.UnpicklingError("energybench does not unpickle objects from .pt2 archives")


@contextlib.contextmanager
def _pickle_disabled():
    """torch.load forced to weights_only=True; pickle.loads and TorchScript's object loader refuse."""
    safe_load = torch.load

    def weights_only_load(*args, **kwargs):
        kwargs["weights_only"] = True
        return safe_load(*args, **kwargs)

    with mock.patch("torch.load", weights_only_load), mock.patch("pickle.loads", _no_unpickling), \
            mock.patch.object(torch._C, "_pickle_load_obj", _no_unpickling):
        yield


def load_exported(path: str | os.PathLike) -> ExportedClassifier:
    """Load a .pt2 program safely and check that it maps (N, 3, H, W) images to (N, K) logits."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"model file not found: {path}")
    inspect_archive(path)
    try:
        with _pickle_disabled():
            program = torch.export.load(str(path))
    except Exception as exc:  # torch raises many kinds here; all mean "not a readable program"
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(f"cannot load {path} as a torch.export program ({first[:200]})") from None
    inputs = [n for n in program.graph.nodes
              if n.op == "placeholder" and n.name in program.graph_signature.user_inputs]
    if len(inputs) != 1 or "val" not in inputs[0].meta or inputs[0].meta["val"].dim() != 4:
        raise UserError(f"{path}: the exported program must take one (N, C, H, W) image tensor")
    shape = inputs[0].meta["val"].shape
    fixed_batch = shape[0] if isinstance(shape[0], int) else None
    model = ExportedClassifier(program.module(), fixed_batch)
    probe = torch.rand(1 if fixed_batch is None else fixed_batch, *[int(s) for s in shape[1:]])
    try:
        with torch.no_grad():
            out = model(probe)
    except Exception as exc:  # noqa: BLE001  a program that cannot run on this input
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(f"{path}: the exported program fails on a test input ({first[:200]})") from None
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        raise UserError(f"{path}: the exported program must return (N, num_classes) logits")
    if not bool(torch.isfinite(out).all()):
        raise UserError(f"{path}: the exported program returns NaN or infinite logits; check its weights")
    model.num_classes = out.shape[1]
    model.input_shape = tuple(int(s) for s in shape[1:])
    return model
