"""Divergence detection for training steps (JEM-style runs are famous for diverging).

A step has diverged when its loss or any logged statistic is not finite, when a logit (an energy)
exceeds `max_abs_energy` in magnitude, or when a logged energy gap (stats named `gap_*`) exceeds
`max_gap`. The trainer then rolls back to its last checkpoint, scales the learning rate by
`lr_factor`, reseeds, logs the event and continues, up to `retries` times.
"""

from __future__ import annotations

import math

import torch

from energybench.training.config import GuardConfig


def divergence_reason(loss: float, biggest_logit: float, stats: dict[str, float],
                      cfg: GuardConfig) -> str | None:
    """Why a step counts as diverged, or None when it looks healthy. `biggest_logit`: the largest
    |logit| of the step's batch (`largest_logit`), NaN when one is not finite."""
    if not math.isfinite(loss):
        return f"loss is {loss}"
    for key, value in stats.items():
        if not math.isfinite(value):
            return f"{key} is {value}"
        if key.startswith("gap_") and abs(value) > cfg.max_gap:
            return f"{key} = {value:.4g} exceeds the bound {cfg.max_gap:g}"
    if not math.isfinite(biggest_logit):
        return "logits are not finite"
    if biggest_logit > cfg.max_abs_energy:
        return f"an energy reached {biggest_logit:.4g}, beyond the bound {cfg.max_abs_energy:g}"
    return None


def largest_logit(logits: torch.Tensor) -> torch.Tensor:
    """max |logit| of logits (N, K) as a 0-dim tensor on their device (NaN if any is NaN)."""
    return logits.detach().abs().max()
