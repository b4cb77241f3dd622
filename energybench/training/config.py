"""Run configuration: frozen dataclasses, dict round trip, and `--set key=value` overrides.

A TrainConfig is fully resolved before training starts and stored in every checkpoint, so a
checkpoint rebuilds its model and resumes its run with no flags. Overrides address fields by dotted
path (`optim.lr=0.05`, `recipe.sigma=16/255`, `model.kwargs.width=64`, shorthand `model.width=64`);
an unknown key is an error that lists the valid ones.
"""

from __future__ import annotations

import ast
import types
import typing
from dataclasses import dataclass, field, fields, is_dataclass, replace
from typing import Any

from energybench.core.errors import UserError, option
from energybench.core.validation import Checked, RangeError, key_value, parse_number


@dataclass(frozen=True)
class ModelConfig:
    name: str = "tiny-cnn"
    kwargs: dict = field(default_factory=dict)


@dataclass(frozen=True)
class DataConfig(Checked):
    LIMITS = {"train_subset": "[1, 100000000]", "eval_subset": "[0, 10000000]", "holdout": "[0, 10000000]"}
    CHOICES = {"padding_mode": ("zeros", "reflect")}

    source: str | None = None  # data spec (see energybench.data); None -> "cifar10" in the data home
    train_subset: int | None = None  # class-balanced subset of the training split; None = all
    eval_subset: int | None = 1000  # first n test images for the per-epoch accuracy; 0 = none
    holdout: int = 0  # training images held out (class-balanced, seeded) for validation and best.pt
    augment: bool = True  # random crop (4 px padding) + horizontal flip
    padding_mode: str = "zeros"  # of the crop: zeros (adversarial-training codebases) or reflect (JEM's)


@dataclass(frozen=True)
class OptimConfig(Checked):
    LIMITS = {"lr": "(0, 1e10]", "momentum": "[0, 1)", "weight_decay": "[0, 1]",
              "batch_size": "[1, 100000]", "epochs": "[1, 100000]", "milestones": "(0, 1)",
              "gamma": "(0, 1]", "warmup_steps": "[0, 1000000000]", "sam_rho": "[0, 100]"}
    CHOICES = {"name": ("sgd", "adam"), "schedule": ("multistep", "cosine", "constant")}

    name: str = "sgd"  # sgd | adam
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    batch_size: int = 128
    epochs: int = 200
    schedule: str = "multistep"  # multistep | cosine | constant
    milestones: tuple[float, ...] = (0.5, 0.75)  # fractions of training, for multistep
    gamma: float = 0.1
    warmup_steps: int = 0  # linear warm-up from 0 (JEM uses 1000)
    sam_rho: float = 0.0  # sharpness-aware minimisation's radius (SADA-JEM: 2); 0: plain updates
    sam_adaptive: bool = False  # adaptive SAM (ASAM: the radius scaled by |w|), as SADA-JEM for rho >= 0.5


@dataclass(frozen=True)
class GuardConfig(Checked):
    """Divergence guard (see energybench.training.guard)."""

    LIMITS = {"max_abs_energy": "(0, inf]", "max_gap": "(0, inf]", "retries": "[0, 100]",
              "lr_factor": "(0, 1)"}

    enabled: bool = True
    max_abs_energy: float = 1e4  # |logit| bound
    max_gap: float = 1e4  # bound on logged energy gaps (stats named gap_*)
    retries: int = 3  # roll-backs before giving up
    lr_factor: float = 0.5  # learning-rate multiplier per roll-back


@dataclass(frozen=True)
class RunConfig(Checked):
    LIMITS = {"seed": "[0, 4294967295]", "checkpoint_every_steps": "[0, 1000000000]", "dynamics_probe": "[0, 100000]",
              "robust_eval": "[0, 10000000]"}
    CHOICES = {"inner_precision": ("float32", "bfloat16"), "select_by": ("auto", "robust", "clean")}

    seed: int = 0
    amp: bool = True  # bfloat16 autocast of the training step on CUDA (CPU trains in float32)
    inner_precision: str = "float32"  # training-time attacks and SGLD: float32 even under amp, or bfloat16
    channels_last: bool = True  # on CUDA
    deterministic: bool = False
    checkpoint_every_steps: int = 0  # extra mid-epoch checkpoints; 0 = only at epoch ends
    dynamics_probe: int = 128  # probe images for per-epoch energy dynamics (JEAT eq. 15); 0 = off
    robust_eval: int = 500  # per-epoch PGD-10 (8/255) images on the test subset and the held-out images; 0 = off
    # best.pt (with data.holdout): the epoch with the highest held-out PGD-10 accuracy ("robust"), or
    # clean accuracy ("clean"); "auto": robust for recipes that train against an attack, else clean
    select_by: str = "auto"
    guard: GuardConfig = GuardConfig()


@dataclass(frozen=True)
class TrainConfig:
    recipe: str
    params: Any  # the recipe's own frozen dataclass of hyper-parameters
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    optim: OptimConfig = OptimConfig()
    run: RunConfig = RunConfig()


# ----------------------------------------------------------------------------- dict round trip


def to_dict(obj: Any) -> Any:
    """Dataclasses -> nested dicts of plain types (tuples become lists)."""
    if is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def from_dict(cls: type, data: dict, where: str = "") -> Any:
    """Rebuild dataclass `cls` from `to_dict` output; unknown keys are an error."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise UserError(f"unknown config key(s) {', '.join(where + k for k in unknown)}")
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        if is_dataclass(hint) and isinstance(value, dict):
            value = from_dict(hint, value, f"{where}{name}.")
        elif _origin(hint) is tuple and isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)


def train_config_from_dict(data: dict, params_cls: type) -> TrainConfig:
    """Rebuild a TrainConfig from `to_dict` output, the params as `params_cls`."""
    data = dict(data)
    params = from_dict(params_cls, data.pop("params"), "params.")
    sections = {name: from_dict(typing.get_type_hints(TrainConfig)[name], data[name], f"{name}.")
                for name in ("model", "data", "optim", "run") if name in data}
    return TrainConfig(recipe=data["recipe"], params=params, **sections)


# ----------------------------------------------------------------------------- overrides


def _origin(hint):
    return typing.get_origin(hint)


def _parse_value(text: str, hint, key: str) -> Any:
    """Parse `text` as a value of type `hint` (int, float incl. 8/255, bool, str, tuple, None)."""
    origin = _origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if type(None) in args and text.strip().lower() in ("none", "null"):
            return None
        inner = [a for a in args if a is not type(None)]
        return _parse_value(text, inner[0], key)
    if hint is bool:
        low = text.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise UserError(f"{key} must be true or false, got {text!r}")
    if hint is int:
        try:
            return int(text)
        except ValueError:
            raise UserError(f"{key} must be an integer, got {text!r}") from None
    if hint is float:
        try:
            return parse_number(text)
        except (ValueError, ZeroDivisionError):
            raise UserError(f"{key} must be a number (e.g. 0.1 or 8/255), got {text!r}") from None
    if origin is tuple:
        (inner, *_) = typing.get_args(hint)
        parts = [p for p in text.strip("()[] ").split(",") if p.strip()]
        return tuple(_parse_value(p.strip(), inner, key) for p in parts)
    if hint is str:
        return text
    if hint is dict or origin is dict:
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise UserError(f"{key} must be a dict literal like {{'width': 64}}, got {text!r}") from None
        if not isinstance(value, dict):
            raise UserError(f"{key} must be a dict literal, got {text!r}")
        return value
    raise UserError(f"{key} cannot be set from the command line")


def parse_field(cls: type, name: str, text: str, key: str | None = None) -> Any:
    """Parse `text` as the value of dataclass field `name` of `cls` (by its type)."""
    return _parse_value(text, typing.get_type_hints(cls)[name], key or name)


def _literal(text: str) -> Any:
    """A free-form value (model kwargs): true/false/none in any case, a Python literal if it
    parses, else the string."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _set_path(obj: Any, path: list[str], text: str, full_key: str) -> Any:
    name, rest = path[0], path[1:]
    if isinstance(obj, dict):
        if rest:
            raise UserError(f"{full_key}: cannot go deeper than {name}")
        return {**obj, name: _literal(text)}
    names = [f.name for f in fields(obj)]
    if name not in names:
        if isinstance(obj, ModelConfig):  # shorthand: model.width=64 -> model.kwargs.width=64
            return replace(obj, kwargs=_set_path(obj.kwargs, path, text, full_key))
        raise UserError(f"unknown config key {full_key!r}; valid here: {', '.join(names)}")
    current = getattr(obj, name)
    if rest:
        if not (is_dataclass(current) or isinstance(current, dict)):
            raise UserError(f"{full_key}: {name} has no sub-keys")
        return replace(obj, **{name: _set_path(current, rest, text, full_key)})
    if is_dataclass(current):
        raise UserError(f"{full_key} is a section; set one of its keys, e.g. {full_key}.<key>=...")
    hint = typing.get_type_hints(type(obj))[name]
    if hint is Any:
        raise UserError(f"{full_key} cannot be set from the command line")
    try:
        return replace(obj, **{name: _parse_value(text, hint, full_key)})
    except RangeError as exc:
        raise exc.renamed(full_key) if exc.field == name else exc from None


def apply_overrides(cfg: TrainConfig, overrides: list[str]) -> TrainConfig:
    """Apply `key=value` strings in order; recipe parameters are `recipe.x` (stored as params.x)."""
    for item in overrides:
        key, text = key_value(item, "override", "optim.lr=0.05")
        path = key.split(".")
        if path[0] == "params":
            raise UserError(f"{key}: recipe parameters are set as recipe.{'.'.join(path[1:])}=...")
        if path[0] == "recipe" and len(path) > 1:
            path[0] = "params"
        if path == ["recipe"]:
            raise UserError(f"the recipe is chosen on the command line, not with {option('set')}")
        cfg = _set_path(cfg, path, text, key)
    return cfg


def describe(cfg: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Flatten a config into (dotted key, value) pairs, for printing."""
    out = []
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if is_dataclass(value):
            out += describe(value, f"{prefix}{f.name}.")
        else:
            out.append((f"{prefix}{f.name}", value))
    return out


# ----------------------------------------------------------------------------- config files


def config_document(cfg: TrainConfig) -> dict:
    """The resolved config as a nested dict for a TOML or YAML file: [recipe] holds its name and
    parameters (the keys `--set recipe.x=...` takes), then [model], [data], [optim], [run].
    Unset values (None) are left out: TOML has no null, and leaving them out keeps the default."""
    doc = to_dict(cfg)
    doc = {"recipe": {"name": doc.pop("recipe"), **doc.pop("params")}, **doc}
    return _drop_none(doc)


def _drop_none(obj):
    if isinstance(obj, dict):
        return {k: _drop_none(v) for k, v in obj.items() if v is not None}
    return obj


def dump_config(cfg: TrainConfig, fmt: str = "toml") -> str:
    """`config_document` as TOML (tomli_w) or YAML (PyYAML), readable by `read_config_file`."""
    doc = config_document(cfg)
    if fmt == "yaml":
        import yaml

        return yaml.safe_dump(doc, sort_keys=False)
    import tomli_w

    return tomli_w.dumps(doc)


def read_config_file(path) -> tuple[str, list[str]]:
    """A TOML or YAML config file -> (recipe name, `key=value` overrides in file order), so a file
    is applied exactly as `--set` would apply the same values (same parsing and range checks)."""
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file {path} does not exist")
    try:
        text = path.read_text()
        if path.suffix in (".yaml", ".yml"):
            import yaml

            # anchors and aliases can nest a value inside itself or expand exponentially when the
            # file is flattened; no energybench config needs them
            if any(isinstance(event, yaml.AliasEvent) for event in yaml.parse(text)):
                raise UserError(f"config file {path} uses YAML aliases (*name); write the values out")
            doc = yaml.safe_load(text)
        elif path.suffix == ".toml":
            import tomllib

            doc = tomllib.loads(text)
        else:
            raise UserError(f"config file {path} must end in .toml, .yaml or .yml")
    except UserError:
        raise
    except Exception as exc:  # tomllib.TOMLDecodeError, yaml.YAMLError, UnicodeDecodeError
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot read config file {path} ({first})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("recipe"), dict) or "name" not in doc["recipe"]:
        raise UserError(f"config file {path} needs a [recipe] section with name = ... (see "
                        f"`energybench train RECIPE --show-config`)")
    recipe = {k: v for k, v in doc["recipe"].items() if k != "name"}
    return str(doc["recipe"]["name"]), _flatten({**doc, "recipe": recipe})


def _flatten(doc: dict, prefix: str = "") -> list[str]:
    out = []
    for key, value in doc.items():
        if isinstance(value, dict) and not (prefix.endswith("model.") and key == "kwargs"):
            out += _flatten(value, f"{prefix}{key}.")
        else:
            out.append(f"{prefix}{key}={_as_text(value)}")
    return out


def _as_text(value) -> str:
    """A file value as the text `--set` parses to the same value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return ",".join(_as_text(v) for v in value)
    if isinstance(value, dict):
        return repr(value)
    return str(value)


__all__ = [
    "ModelConfig", "DataConfig", "OptimConfig", "GuardConfig", "RunConfig", "TrainConfig", "to_dict",
    "from_dict", "train_config_from_dict", "apply_overrides", "describe", "config_document",
    "dump_config", "read_config_file",
]
