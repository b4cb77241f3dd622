"""A metric's protocol from the caller's overrides: typed values or KEY=VALUE text parsed by each
field's type, the norms an attack metric runs in, and the checks of the call's own arguments.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing

from energybench import data as datalib
from energybench.attacks.pgd import NORMS, parse_eps
from energybench.core.errors import UserError, option
from energybench.core.validation import RangeError
from energybench.energy.purification import PurificationConfig
from energybench.handles.reference import is_zoo_name
from energybench.metrics import METRICS


def metric_params(name: str, overrides: dict) -> object:
    """The metric's protocol with the applicable overrides applied. Override values may be typed
    (eps=0.03) or strings from `--param KEY=VALUE`, parsed by the field's type; an eps string is
    read for the metric's norm (an L2 budget written as x/255 is refused)."""
    from energybench.training.config import parse_field

    cls = METRICS.get(name)
    fields = {f.name for f in dataclasses.fields(cls.Params)}
    hints = typing.get_type_hints(cls.Params)
    norm = overrides.get("norm") if "norm" in fields and overrides.get("norm") is not None else "Linf"
    values = {}
    for key, value in overrides.items():
        if key in fields and value is not None:
            if key == "eps" and isinstance(value, str):
                value = parse_eps(value, norm)
            elif isinstance(value, str) and key != "inception_weights":
                value = parse_field(cls.Params, key, value)
            elif not _fits(value, hints[key]):
                raise UserError(f"{key} must be {_type_text(hints[key])}, got {value!r}")
            values[key] = value
    try:
        return cls.Params(**values)
    except RangeError as exc:
        raise exc.renamed(f"{name}: {exc.field}") from None


def _fits(value, hint) -> bool:
    """Whether a protocol value given from Python has its field's type (an int for a float field
    too; a tuple or list of them for a tuple field)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(_fits(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if typing.get_origin(hint) is tuple:
        inner = typing.get_args(hint)[0]
        return isinstance(value, (tuple, list)) and all(_fits(v, inner) for v in value)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint) if isinstance(hint, type) else True


def _type_text(hint) -> str:
    names = {float: "a number", int: "an integer", bool: "true or false", str: "text"}
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_type_text(h) for h in typing.get_args(hint) if h is not type(None))
    if typing.get_origin(hint) is tuple:
        return f"a list of {_type_text(typing.get_args(hint)[0]).removeprefix('a ').removeprefix('an ')}s"
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def check_call_arguments(n, batch_size, seed, data, train_data) -> None:
    """What `evaluate` is given from Python, checked before any work: one line naming the argument."""
    for name, value in (("n", n), ("batch_size", batch_size), ("seed", seed)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise UserError(f"{name} must be an integer, got {value!r}")
    for name, value in (("data", data), ("train_data", train_data)):
        if value is None or isinstance(value, (str, os.PathLike, datalib.LabeledImages)):
            continue
        if isinstance(value, tuple) and len(value) == 2:
            continue
        what = f"a tuple of {len(value)}" if isinstance(value, tuple) else f"a {type(value).__name__}"
        raise UserError(f"{name} must be a data spec, LabeledImages or (images, labels); got {what}")


def attack_norms(metrics: list[str], overrides: dict, model, threat_model: str) -> dict[str, dict]:
    """Each metric's overrides with the threat model settled. A norm the user asked for (--norm,
    norm=) goes to every attack metric, and one that cannot attack in it is an error; without one,
    a RobustBench model is attacked in its own threat model (Linf or L2) by the metrics that can,
    and the others keep their L-inf protocol (the summary names the mismatch)."""
    asked = overrides.get("norm")
    if asked is not None and asked not in NORMS:
        raise UserError(f"{option('norm', repr(asked))} is not a threat model energybench attacks in; use {' or '.join(NORMS)}")
    implied = threat_model if asked is None and is_zoo_name(model) and threat_model in NORMS else None
    per_metric = {}
    for name in metrics:
        cls = METRICS.get(name)
        norm = asked or implied
        if asked is not None and cls.norms and asked not in cls.norms:
            raise UserError(f"{name} attacks in {' and '.join(cls.norms)} only, not {asked}; evaluate it in "
                            f"a separate run without {option('norm', asked)}")
        takes_norm = norm is not None and norm in cls.norms and len(cls.norms) > 1
        per_metric[name] = {**overrides, "norm": norm if takes_norm else None}
    return per_metric


# Protocol names that were renamed so that one concept has one name everywhere.
RENAMED_PARAMS = {"noise_scale": "noise"}


def check_param_keys(metrics: list[str], keys) -> None:
    """Every --param key must belong to at least one selected metric's protocol."""
    known = {f.name for m in metrics for f in dataclasses.fields(METRICS.get(m).Params)}
    renamed = sorted(k for k in keys if k in RENAMED_PARAMS)
    if renamed:
        raise UserError(f"{option('param', renamed[0])} is now called {RENAMED_PARAMS[renamed[0]]}; "
                        f"write {RENAMED_PARAMS[renamed[0]]}=...")
    unknown = sorted(set(keys) - known)
    if unknown:
        raise UserError(f"{option('param', ', '.join(unknown))}: no selected metric takes it; they take: "
                        f"{', '.join(sorted(known)) or 'nothing'}")


PURIFY_PREFIX = "purify_"  # protocol keys of the model's purification: purify_step_size, _noise, _chains


def split_purification(steps: int | None, overrides: dict) -> tuple[PurificationConfig | None, dict]:
    """The purification the model runs with (`steps` Langevin steps and the purify_* values among
    the overrides, typed or KEY=VALUE text; None for 0 steps) and the remaining overrides. A
    purify_* value without steps is refused: it would change nothing."""
    from energybench.training.config import parse_field

    given = {k: v for k, v in overrides.items() if k.startswith(PURIFY_PREFIX)}
    rest = {k: v for k, v in overrides.items() if not k.startswith(PURIFY_PREFIX)}
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int)):
        raise UserError(f"{option('purify')} must be a number of steps, got {steps!r}")
    if not steps:
        if given:
            raise UserError(f"{option('param', sorted(given)[0])} sets the purification, which is off; "
                            f"give it steps with {option('purify', 'STEPS')}")
        return None, rest
    known = {f.name for f in dataclasses.fields(PurificationConfig)} - {"steps"}
    values = {}
    for key, value in given.items():
        name = key[len(PURIFY_PREFIX):]
        if name not in known:
            raise UserError(f"{option('param', key)}: the purification takes "
                            f"{', '.join(PURIFY_PREFIX + k for k in sorted(known))}")
        values[name] = parse_field(PurificationConfig, name, value) if isinstance(value, str) else value
    try:
        return PurificationConfig(steps=steps, **values), rest
    except RangeError as exc:
        raise exc.renamed("purification steps" if exc.field == "steps" else PURIFY_PREFIX + exc.field) from None
