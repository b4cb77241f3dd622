"""Adapter for pyautoattack's standard AutoAttack (APGD-CE, APGD-T, FAB-T, Square; L-inf).

pyautoattack==0.2.0 is fra31's attack code behind a keyword-only API; it resumes from a JSON state
file and returns (x_adv, y_adv). Its per-attack robust accuracies are only logged, so we collect
them from its logger ('auto-attack').
"""

from __future__ import annotations

import ast
import logging
import re
import tempfile
from unittest import mock
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from energybench.attacks import check_eps, eval_mode
from energybench.errors import UserError

_STEP_RE = re.compile(r"robust accuracy after (\S+): ([\d.]+)%")


@dataclass
class AutoAttackResult:
    clean_accuracy: float
    robust_accuracy: float
    robust_flags: torch.Tensor  # bool (N,): True where no attack succeeded
    per_attack: dict[str, float] = field(default_factory=dict)  # robust accuracy after each attack


class _LogCollector(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.per_attack: dict[str, float] = {}

    def emit(self, record):
        match = _STEP_RE.search(record.getMessage())
        if match:
            self.per_attack[match[1].lower()] = float(match[2]) / 100.0


def _state_class():
    """pyautoattack 0.2.0 writes its set of attacks with json.dump(default=str), i.e. as the
    string "{'apgd-ce', ...}", and reads it back as that string (so every resume fails with
    'different set of attacks'); its run attacks come back as a list, which has no `add`.
    This subclass restores both sets."""
    from pyautoattack.state import EvaluationState

    class ResumableState(EvaluationState):
        @classmethod
        def from_disk(cls, path):
            state = super().from_disk(path)
            attacks = state._attacks_to_run
            state._attacks_to_run = set(ast.literal_eval(attacks) if isinstance(attacks, str) else attacks)
            state._run_attacks = set(state._run_attacks)
            return state

    return ResumableState


def _is_complete(state) -> bool:
    """All attacks ran, or none was needed any more (pyautoattack stops when nothing is robust)."""
    if state.robust_flags is None:
        return False
    return set(state.run_attacks) >= set(state.attacks_to_run) or not bool(state.robust_flags.any())


def run_autoattack(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float = 8 / 255,
    seed: int = 0,
    batch_size: int = 250,
    device: torch.device | str = "cpu",
    state_path: Path | None = None,
    version: str = "standard",
) -> AutoAttackResult:
    """Standard AutoAttack on x (N, C, H, W) in [0, 1], y (N,). Resumable through `state_path`."""
    try:
        import pyautoattack.autoattack as aa_module
        from pyautoattack import AutoAttack
    except ImportError:
        raise UserError("AutoAttack needs pyautoattack: pip install pyautoattack==0.2.0") from None
    check_eps(eps)
    logger = logging.getLogger("auto-attack")
    collector = _LogCollector()
    logger.addHandler(collector)
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    state_cls = _state_class()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(state_path) if state_path is not None else Path(tmp) / "autoattack-state.json"
        resuming = path.exists()
        done = resuming and _is_complete(state_cls.from_disk(path))
        try:
            if not done:
                with eval_mode(model), mock.patch.object(aa_module, "EvaluationState", state_cls):
                    adversary = AutoAttack(model, norm="Linf", eps=eps, version=version, seed=seed,
                                           device=device)
                    adversary.run_standard_evaluation(x, y, batch_size=batch_size, state_path=path)
        except UnboundLocalError:
            # pyautoattack 0.2.0 finishes a resumed run, saves its state, then fails to return
            # (`y_adv` is only set on a fresh run). The state file holds the result.
            if not resuming:
                raise
        finally:
            logger.removeHandler(collector)
            logger.setLevel(old_level)
        state = state_cls.from_disk(path)
        if not _is_complete(state):
            raise UserError(f"AutoAttack state {path} is incomplete after the run; delete it and rerun")
    flags = state.robust_flags.cpu()
    return AutoAttackResult(float(state.clean_accuracy), int(flags.sum()) / len(flags), flags,
                            collector.per_attack)
