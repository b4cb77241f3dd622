"""Adapter for pyautoattack's standard AutoAttack (APGD-CE, APGD-T, FAB-T, Square; L-inf).

pyautoattack==0.2.0 is fra31's attack code behind a keyword-only API; it resumes from a JSON state
file and returns (x_adv, y_adv). Its per-attack robust accuracies are only logged, so we collect
them from its logger ('auto-attack').
"""

from __future__ import annotations

import logging
import re
import tempfile
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
        from pyautoattack import AutoAttack
        from pyautoattack.state import EvaluationState
    except ImportError:
        raise UserError("AutoAttack needs pyautoattack: pip install pyautoattack==0.2.0") from None
    check_eps(eps)
    logger = logging.getLogger("auto-attack")
    collector = _LogCollector()
    logger.addHandler(collector)
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(state_path) if state_path is not None else Path(tmp) / "autoattack-state.json"
        try:
            with eval_mode(model):
                adversary = AutoAttack(model, norm="Linf", eps=eps, version=version, seed=seed,
                                       device=device)
                adversary.run_standard_evaluation(x, y, batch_size=batch_size, state_path=path)
        finally:
            logger.removeHandler(collector)
            logger.setLevel(old_level)
        # The state file holds the final robust flags, also when the run resumed a saved state
        # (pyautoattack then returns only the examples of the current run).
        state = EvaluationState.from_disk(path)
    flags = state.robust_flags.cpu()
    return AutoAttackResult(float(state.clean_accuracy), float(flags.float().mean()), flags,
                            collector.per_attack)
