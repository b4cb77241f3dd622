"""Declared value ranges for the frozen dataclasses of configs and protocols.

A dataclass that inherits `Checked` lists its bounded fields in `LIMITS` as intervals,
`{"lr": "(0, 1e10]", "momentum": "[0, 1)", "batch_size": "[1, 100000]"}`, and its fields with a fixed
set of values in `CHOICES`, `{"name": ("sgd", "adam")}`; every instance is
checked when it is built (also by `dataclasses.replace` and `--set`): a value outside its interval,
and any NaN or infinite float not explicitly allowed by a closed `inf]`, is a `RangeError` whose
message names the field, the allowed range and the value. Every count of work and every step has
a finite upper limit (tests/unit/core/test_knob_limits.py), so no value asks for unbounded work. Tuples are checked element by element.
"""

from __future__ import annotations

import math
import re
from dataclasses import MISSING, fields
from typing import ClassVar

from energybench.core.errors import UserError


class RangeError(UserError):
    """A field value outside its declared range. `field` is the dataclass field name; callers
    that know the full key (`optim.lr`, `--param max_images`) re-raise with `renamed`."""

    def __init__(self, field: str, detail: str):
        super().__init__(f"{field} {detail}")
        self.field, self.detail = field, detail

    def renamed(self, key: str) -> "RangeError":
        return RangeError(key, self.detail)


def _parse(spec: str) -> tuple[float, float, bool, bool]:
    """'(0, inf)' -> (low, high, low_closed, high_closed)."""
    low_text, high_text = spec[1:-1].split(",")
    return float(low_text), float(high_text), spec[0] == "[", spec[-1] == "]"


def describe_range(spec: str) -> str:
    """'(0, inf)' -> 'must be > 0'; '[1, inf)' -> 'must be >= 1'; else 'must be in [0, 1)'."""
    low, high, low_closed, _ = _parse(spec)
    if math.isinf(high) and not math.isinf(low):
        return f"must be {'>=' if low_closed else '>'} {low:g}"
    return f"must be in {spec}"


def check_value(name: str, value, spec: str) -> None:
    """Raise RangeError unless the number `value` lies in the interval `spec`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    low, high, low_closed, high_closed = _parse(spec)
    if isinstance(value, float) and math.isnan(value):
        raise RangeError(name, f"{describe_range(spec)}, got nan")
    above = value > low or (low_closed and value == low)
    below = value < high or (high_closed and value == high)
    if not (above and below):
        raise RangeError(name, f"{describe_range(spec)}, got {value if isinstance(value, int) else format(value, 'g')}")


class Checked:
    """Mixin for frozen dataclasses: checks `LIMITS` and refuses NaN / infinite floats."""

    LIMITS: ClassVar[dict[str, str]] = {}
    CHOICES: ClassVar[dict[str, tuple]] = {}

    def __post_init__(self):
        for name, allowed in self.CHOICES.items():
            if getattr(self, name) not in allowed:
                raise RangeError(name, f"must be one of {', '.join(map(str, allowed))}, got "
                                       f"{getattr(self, name)!r}")
        for f in fields(self):
            value = getattr(self, f.name)
            values = value if isinstance(value, tuple) else (value,)
            spec = self.LIMITS.get(f.name)
            for v in values:
                if spec is not None:
                    check_value(f.name, v, spec)
                elif isinstance(v, float) and not math.isfinite(v):
                    raise RangeError(f.name, f"must be a finite number, got {v}")


def describe_fields(cls) -> dict[str, dict]:
    """A dataclass's fields as a user sets them: {name: {"default", "type", and "range" (from LIMITS)
    or "choices" (from CHOICES) where declared}}; defaults that are not JSON numbers, text, booleans
    or None are written as text."""
    out = {}
    for f in fields(cls):
        if f.name.startswith("_") or not f.init:
            continue
        default = f.default if f.default is not MISSING else (
            f.default_factory() if f.default_factory is not MISSING else None)
        if not (default is None or isinstance(default, (bool, int, float, str))):
            default = str(default)
        entry = {"default": default, "type": f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))}
        if f.name in getattr(cls, "CHOICES", {}):
            entry["choices"] = list(cls.CHOICES[f.name])
        elif f.name in getattr(cls, "LIMITS", {}):
            entry["range"] = cls.LIMITS[f.name]
        out[f.name] = entry
    return out


ASCII_NUMBER = re.compile(r"[+-]?[0-9.]+([eE][+-]?[0-9]+)?(\s*/\s*[+-]?[0-9.]+([eE][+-]?[0-9]+)?)?\Z")


def parse_number(text: str) -> float:
    """'8/255', '0.5/255', '0.0314', '1e-3' -> float, by fractions.Fraction; 'nan' and 'inf' pass through as
    floats so that range checks name them. ValueError or ZeroDivisionError for anything else."""
    from fractions import Fraction

    text = text.strip()
    if text.lower().lstrip("+-") in ("nan", "inf", "infinity"):
        return float(text)
    if not ASCII_NUMBER.match(text):  # Fraction would read full-width digits and 1_0 as numbers
        raise ValueError(f"{text!r} is not a number written with ASCII digits")
    if "/" in text:  # Fraction reads 8/255 but not 0.5/255: each side on its own
        numerator, denominator = text.split("/", 1)
        if "/" in denominator:
            raise ValueError(f"{text!r} has more than one /")
        return float(Fraction(numerator.strip()) / Fraction(denominator.strip()))
    return float(Fraction(text))


def key_value(item: str, what: str, example: str) -> tuple[str, str]:
    """'KEY=VALUE' -> (KEY, VALUE), both stripped; a UserError naming `what` and an `example`
    otherwise."""
    if "=" not in item:
        raise UserError(f"{what} {item!r} must look like KEY=VALUE (e.g. {example})")
    key, value = item.split("=", 1)
    return key.strip(), value.strip()
