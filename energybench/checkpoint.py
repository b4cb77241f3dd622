"""Checkpoints (plain types, `weights_only=True`, atomic) and external `torch.export` models.

A checkpoint is a dict:
    format, format_version          "energybench-checkpoint", FORMAT_VERSION
    recipe                          recipe name
    model                           {"name": registered model, "kwargs": {...}}
    config                          the resolved TrainConfig as a dict
    state_dict                      model weights
    recipe_state                    the recipe's own state (e.g. a replay buffer), or {}
    optimizer                       optimizer state, for resume
    progress                        {"epoch", "step_in_epoch", "global_step", "finished"}
    meta                            seed, dataset and its source, versions, git sha, times
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from energybench.errors import UserError

FORMAT = "energybench-checkpoint"
FORMAT_VERSION = 1


def atomic_save(obj, path: str | os.PathLike) -> None:
    """torch.save to a temporary file in the same folder, fsync, then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


_PLAIN = (str, int, float, bool, type(None), torch.Tensor)


def check_plain(obj, where: str = "checkpoint") -> None:
    """Raise TypeError unless `obj` is made only of dicts, lists, tuples, plain scalars and
    tensors: what `torch.load(weights_only=True)` accepts without pickled classes."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            if not isinstance(key, (str, int)):
                raise TypeError(f"{where}: key {key!r} is not a str or int")
            check_plain(value, f"{where}.{key}")
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            check_plain(value, f"{where}[{i}]")
    elif type(obj) not in _PLAIN and not isinstance(obj, torch.Tensor):
        raise TypeError(f"{where} is a {type(obj).__name__}, not a plain type")


def save_checkpoint(ckpt: dict, path: str | os.PathLike) -> None:
    """Check that `ckpt` holds plain types only, then write it atomically."""
    check_plain(ckpt)
    atomic_save(ckpt, path)


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Load and validate an energybench checkpoint; any problem is a one-line UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc).split("WeightsUnpickler error:", 1)[-1]
        first = next((ln.strip() for ln in text.splitlines() if ln.strip()), type(exc).__name__)
        if "unsupported global" in str(exc).lower():
            raise UserError(
                f"refusing {path}: it holds pickled Python objects, not plain tensors "
                f"(loading it could run code); re-save its state_dict, or export the model to .pt2"
            ) from None
        raise UserError(f"corrupt checkpoint {path} ({first[:160]})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"corrupt or truncated checkpoint {path} ({first})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        looks_like = (
            " (it looks like a bare state_dict)"
            if isinstance(ckpt, dict) and ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values())
            else ""
        )
        raise UserError(
            f"{path} is not an energybench checkpoint{looks_like}; export a model from elsewhere "
            f"with torch.export to a .pt2 file taking [0,1] NCHW images and returning logits"
        )
    version = ckpt.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise UserError(
            f"{path} has checkpoint format version {version}; this energybench reads up to "
            f"{FORMAT_VERSION}: upgrade energybench"
        )
    missing = [k for k in ("recipe", "model", "config", "state_dict", "meta") if k not in ckpt]
    if missing:
        raise UserError(f"{path} is an incomplete checkpoint (missing {', '.join(missing)})")
    return ckpt


def model_from_checkpoint(ckpt: dict, path: str | os.PathLike = "checkpoint") -> nn.Module:
    """Rebuild the model a checkpoint describes and load its weights (on CPU, eval mode)."""
    from energybench.models import create_model

    spec = ckpt["model"]
    model = create_model(spec["name"], **spec["kwargs"])
    try:
        result = model.load_state_dict(ckpt["state_dict"], strict=False)
    except RuntimeError as exc:
        mismatch = next((ln.strip() for ln in str(exc).splitlines() if "size mismatch" in ln), str(exc))
        raise UserError(f"{path}: weights do not fit model {spec['name']} ({mismatch[:200]})") from None
    if result.missing_keys or result.unexpected_keys:
        raise UserError(
            f"{path}: weights do not fit model {spec['name']} (missing {len(result.missing_keys)} "
            f"keys e.g. {result.missing_keys[:2]}, unexpected {len(result.unexpected_keys)} "
            f"e.g. {result.unexpected_keys[:2]})"
        )
    return model.eval()


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


def load_exported(path: str | os.PathLike) -> ExportedClassifier:
    """Load a .pt2 program and check that it maps (N, 3, H, W) images to (N, K) logits."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"model file not found: {path}")
    try:
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
    with torch.no_grad():
        out = model(probe)
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        raise UserError(f"{path}: the exported program must return (N, num_classes) logits")
    model.num_classes = out.shape[1]
    model.input_shape = tuple(int(s) for s in shape[1:])
    return model


@dataclass
class LoadedModel:
    """A model ready to evaluate, with what results must record about it."""

    model: nn.Module
    kind: str  # "checkpoint" | "export"
    path: Path
    sha256: str
    checkpoint: dict | None  # the full checkpoint dict for kind == "checkpoint"

    @property
    def train_source(self) -> str | None:
        """The data spec the model was trained on, if known."""
        if self.checkpoint is None:
            return None
        return self.checkpoint["meta"].get("data_spec")


def load_model(path: str | os.PathLike, device: torch.device | str = "cpu") -> LoadedModel:
    """An energybench checkpoint (.pt) or a torch.export program (.pt2), in eval mode on `device`."""
    path = Path(path)
    if path.suffix == ".pt2":
        model, ckpt = load_exported(path), None
        kind = "export"
    else:
        ckpt = read_checkpoint(path)
        model, kind = model_from_checkpoint(ckpt, path), "checkpoint"
    model = model.to(device).eval()
    return LoadedModel(model, kind, path, sha256_of(path), ckpt)
