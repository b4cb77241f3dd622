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
    weights_sha256                  digest of state_dict (energybench.core.hashing.tensors_sha256),
                                    checked on every load: a flipped bit in a weight is refused
"""

from __future__ import annotations

import os
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from energybench.core.atomic import atomic_output
from energybench.core.errors import UserError
from energybench.core.hashing import file_sha256, tensors_sha256
from energybench.core.safe_pickle import read_plain
from energybench.handles.exported import load_exported
from energybench.models import create_model

FORMAT = "energybench-checkpoint"
FORMAT_VERSION = 2  # 2: weights_sha256 (version 1 files load, without the integrity check)


def atomic_save(obj, path: str | os.PathLike) -> None:
    """torch.save to a temporary file in the same folder, fsync, then rename over `path`."""
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as fh:
            try:
                torch.save(obj, fh)
            except RuntimeError as exc:  # torch reports a failed write (disk full) as its own error
                if isinstance(exc.__context__, OSError):
                    raise exc.__context__ from None
                raise
            fh.flush()
            os.fsync(fh.fileno())


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


def build_checkpoint(recipe: str, model_name: str, model_kwargs: dict, config: dict, state_dict: dict,
                     recipe_state: dict, optimizer: dict, progress: dict, meta: dict) -> dict:
    """The checkpoint format (`CHECKPOINT_SCHEMA`), built in one place: its name and version, the
    recipe and the model that rebuild the network, the resolved config, the weights (on the CPU),
    the recipe's and optimizer's state and the loop's progress for resume, and the meta a record
    cites (seed, data, classes, image shape, versions)."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "recipe": recipe,
        "model": {"name": model_name, "kwargs": dict(model_kwargs)},
        "config": config,
        "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
        "recipe_state": recipe_state,
        "optimizer": optimizer,
        "progress": progress,
        "meta": meta,
    }


def save_checkpoint(ckpt: dict, path: str | os.PathLike) -> None:
    """Check that `ckpt` holds plain types only, add the weights' digest, write it atomically."""
    check_plain(ckpt)
    atomic_save({**ckpt, "weights_sha256": tensors_sha256(ckpt["state_dict"])}, path)


def check_weights(ckpt: dict, path: Path) -> None:
    """The weights must match their stored digest (version >= 2) and be finite."""
    stored = ckpt.get("weights_sha256")
    if ckpt["format_version"] >= 2:
        if not isinstance(stored, str) or tensors_sha256(ckpt["state_dict"]) != stored:
            raise UserError(f"{path}: the weights do not match their stored digest (the file is "
                            f"corrupt or was edited); use another copy or retrain")
    for key, tensor in ckpt["state_dict"].items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise UserError(f"{path}: weight {key} holds NaN or infinite values (the run diverged?); "
                            f"use an earlier checkpoint or retrain with a lower learning rate")


# What each field a reader of checkpoints uses must be: (dotted field, allowed types, required).
# A checkpoint is checked against it before any of it is used, so a wrong structure is one line
# naming the field, never a KeyError deep inside evaluation or resume.
CHECKPOINT_SCHEMA = (
    ("recipe", (str,), True),
    ("model", (dict,), True),
    ("model.name", (str,), True),
    ("model.kwargs", (dict,), True),
    ("config", (dict,), True),
    ("config.optim", (dict,), True),
    ("config.optim.epochs", (int,), True),
    ("config.params", (dict, type(None)), False),
    ("state_dict", (dict,), True),
    ("meta", (dict,), True),
    ("meta.seed", (int, type(None)), False),
    ("meta.classes", (list, type(None)), False),
    ("meta.world_size", (int,), False),
    ("meta.data_spec", (str, type(None)), False),
    ("meta.train_source", (dict, type(None)), False),
    ("meta.num_train_images", (int, type(None)), False),
    ("meta.image_shape", (list, type(None)), False),
    ("meta.num_holdout_images", (int, type(None)), False),
    ("progress", (dict,), False),
    ("progress.epoch", (int,), False),
    ("progress.step_in_epoch", (int,), False),
    ("progress.global_step", (int,), False),
    ("progress.finished", (bool,), False),
    ("progress.rollbacks", (int,), False),
    ("progress.lr_scale", (int, float), False),
    ("progress.resume_overrides", (list,), False),
    ("optimizer", (dict,), False),
    ("recipe_state", (dict,), False),
    ("selection", (dict,), False),
)


def _field(ckpt: dict, dotted: str):
    """The value at `dotted` (a.b.c), or KeyError if some level is absent."""
    value = ckpt
    for part in dotted.split("."):
        value = value[part]  # every parent was checked to be a dict before
    return value


def check_structure(ckpt: dict, path: Path) -> None:
    """Every field in CHECKPOINT_SCHEMA has its type; names and weights are what loading needs."""
    for dotted, types, required in CHECKPOINT_SCHEMA:
        try:
            value = _field(ckpt, dotted)
        except KeyError:
            if required:
                raise UserError(f"{path} is a damaged checkpoint: field {dotted} is missing") from None
            continue
        # bool is an int in Python; a flag is never a count here
        wrong = not isinstance(value, types) or (isinstance(value, bool) and bool not in types)
        if wrong:
            names = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise UserError(f"{path} is a damaged checkpoint: field {dotted} is a "
                            f"{type(value).__name__}, not {names}")
    if not all(isinstance(k, str) for k in ckpt["model"]["kwargs"]):
        raise UserError(f"{path} is a damaged checkpoint: field model.kwargs has non-string keys")
    classes = ckpt["meta"].get("classes")
    if classes is not None and not all(isinstance(c, str) for c in classes):
        raise UserError(f"{path} is a damaged checkpoint: field meta.classes holds non-string names")
    for key, tensor in ckpt["state_dict"].items():
        if not isinstance(key, str):
            raise UserError(f"{path} is a damaged checkpoint: state_dict key {key!r} is not a string")
        if not isinstance(tensor, torch.Tensor):
            raise UserError(f"{path} is a damaged checkpoint: state_dict[{key!r}] is a "
                            f"{type(tensor).__name__}, not a tensor")
        if tensor.layout != torch.strided:
            raise UserError(f"{path}: weight {key} is a {tensor.layout} tensor; save dense weights "
                            f"(tensor.to_dense())")
        if tensor.is_complex():
            raise UserError(f"{path}: weight {key} is {tensor.dtype}; a classifier's weights are real "
                            f"(converting would drop the imaginary part)")
        if tensor.is_quantized:
            raise UserError(f"{path}: weight {key} is quantized ({tensor.dtype}); save float weights")


# What to do with a model that is no energybench checkpoint, whatever form it came in (a whole
# pickled module, a bare state_dict): one piece of advice that ends the search, not a chain of them
EXPORT_ADVICE = ("export the model with torch.export to a .pt2 file taking [0, 1] NCHW images and returning "
                 "logits (a state_dict alone cannot be evaluated without the model's code; energybench "
                 "checkpoints come from `energybench train`)")


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Load and validate an energybench checkpoint; any problem is a one-line UserError."""
    path = Path(path)
    ckpt = read_plain(path, "checkpoint", EXPORT_ADVICE)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        looks_like = (
            " (it looks like a bare state_dict)"
            if isinstance(ckpt, dict) and ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values())
            else ""
        )
        raise UserError(f"{path} is not an energybench checkpoint{looks_like}; {EXPORT_ADVICE}")
    version = ckpt.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise UserError(
            f"{path} has checkpoint format version {version}; this energybench reads up to "
            f"{FORMAT_VERSION}: upgrade energybench"
        )
    missing = [k for k in ("recipe", "model", "config", "state_dict", "meta") if k not in ckpt]
    if missing:
        raise UserError(f"{path} is an incomplete checkpoint (missing {', '.join(missing)})")
    check_structure(ckpt, path)
    check_weights(ckpt, path)
    return ckpt


def model_from_checkpoint(ckpt: dict, path: str | os.PathLike = "checkpoint") -> tuple[nn.Module, str | None]:
    """Rebuild the model a checkpoint describes and load its weights (on CPU, eval mode).

    Returns the model and, where stored weights had another floating dtype than the model's
    (float16, bfloat16, float64), a sentence saying what was converted; otherwise None.
    """
    spec = ckpt["model"]
    with warnings.catch_warnings():  # e.g. width=0 makes torch warn before the mismatch below
        warnings.simplefilter("ignore")
        model = create_model(spec["name"], **spec["kwargs"])
    expected = model.state_dict()
    converted: dict[str, int] = {}
    for key, tensor in ckpt["state_dict"].items():
        target = expected.get(key)
        if target is not None and tensor.is_floating_point() and tensor.dtype != target.dtype:
            pair = f"{tensor.dtype} to {target.dtype}".replace("torch.", "")
            converted[pair] = converted.get(pair, 0) + 1
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
    note = None
    if converted:
        note = "converted " + ", ".join(f"{n} weight tensor(s) from {pair}" for pair, n in sorted(converted.items()))
    return model.eval(), note


@dataclass
class LoadedModel:
    """A model ready to evaluate, with what results must record about it."""

    model: nn.Module
    kind: str  # "checkpoint" | "export" | "robustbench" | "module"
    path: Path | None  # the file it came from (None for a Python module)
    sha256: str  # the file's digest, or the weights' (energybench.handles.model_handle) where there is no file
    checkpoint: dict | None  # the full checkpoint dict for kind == "checkpoint"
    name: str = ""  # how records and titles name it: a path, robustbench:NAME, or module:Class
    info: dict = field(default_factory=dict)  # provenance beyond the file (e.g. RobustBench's)
    data_spec: str | None = None  # the data it was trained on where no checkpoint says (a zoo model's dataset)

    def __post_init__(self):
        if not self.name:
            self.name = str(self.path)

    @property
    def train_source(self) -> str | None:
        """The data spec the model was trained on, if known."""
        if self.checkpoint is None:
            return self.data_spec
        return self.checkpoint["meta"].get("data_spec")


def load_model(path: str | os.PathLike, device: torch.device | str = "cpu") -> LoadedModel:
    """An energybench checkpoint (.pt) or a torch.export program (.pt2), in eval mode on `device`."""
    path = Path(path)
    info: dict = {}
    if path.suffix == ".pt2":
        model, ckpt = load_exported(path), None
        kind = "export"
    else:
        ckpt = read_checkpoint(path)
        (model, converted), kind = model_from_checkpoint(ckpt, path), "checkpoint"
        if converted:
            print(f"energybench: {path}: {converted} (the model computes in float32)",
                  file=sys.stderr, flush=True)
            info["converted_weights"] = converted
    model = model.to(device).eval()
    return LoadedModel(model, kind, path, file_sha256(path), ckpt, info=info)
