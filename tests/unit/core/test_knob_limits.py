"""Every knob of a protocol or config has a declared, finite upper limit, so that no value can ask
for unbounded work (`--param steps=10**12`, `eot=10**9`, `--n-per-class 10**8`) and be refused
only by the machine: a value beyond it is one line naming the limit."""

from __future__ import annotations

import dataclasses
import importlib
import math
import pkgutil

import pytest

import energybench
from energybench.core.errors import UserError
from energybench.core.validation import Checked, _parse

pytestmark = pytest.mark.synthetic

# Attack budgets and their steps are checked per norm by attacks.pgd.check_eps ((0, 1] L-inf,
# (0, 1000] L2); robust-curve's grid likewise. Guard thresholds may be inf: "off", not work.
CHECKED_ELSEWHERE = {"eps", "step_size", "eps_grid"}
MAY_BE_INFINITE = {"max_abs_energy", "max_gap"}


def _all_checked_classes() -> list[type]:
    for module in pkgutil.walk_packages(energybench.__path__, "energybench."):
        importlib.import_module(module.name)
    found, todo = [], list(Checked.__subclasses__())
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return sorted(set(found), key=lambda c: f"{c.__module__}.{c.__name__}")


CLASSES = _all_checked_classes()


def _numeric_fields(cls) -> list[str]:
    instance = cls()
    return [f.name for f in dataclasses.fields(cls)
            if isinstance(getattr(instance, f.name), (int, float)) and not isinstance(getattr(instance, f.name), bool)]


def test_the_protocols_and_configs_are_all_found():
    names = {c.__name__ for c in CLASSES}
    assert {"PGDConfig", "GenerationConfig", "AutoAttackParams", "FisherParams", "OptimConfig",
            "SGLDParams"} <= names


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_every_numeric_knob_has_a_finite_upper_limit(cls):
    for name in _numeric_fields(cls):
        if name in CHECKED_ELSEWHERE:
            continue
        spec = cls.LIMITS.get(name)
        assert spec is not None, f"{cls.__name__}.{name} has no declared range"
        high = _parse(spec)[1]
        if name in MAY_BE_INFINITE:
            continue
        assert math.isfinite(high), f"{cls.__name__}.{name}: {spec} has no finite upper limit"


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_a_value_past_the_limit_is_one_line_naming_it(cls):
    for name in _numeric_fields(cls):
        spec = cls.LIMITS.get(name)
        if spec is None or name in MAY_BE_INFINITE:
            continue
        high = _parse(spec)[1]
        with pytest.raises(UserError) as caught:
            cls(**{name: type(getattr(cls(), name))(high * 10 + 1)})
        message = str(caught.value)
        assert "\n" not in message and name in message and spec in message, message
