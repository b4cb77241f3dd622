"""The optimizer and its learning-rate schedule.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from energybench.core.errors import UserError
from energybench.training.config import OptimConfig


def learning_rate(cfg: OptimConfig, step: int, total_steps: int) -> float:
    """Learning rate at optimizer step `step` (0-based) of `total_steps`."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress_frac = step / max(1, total_steps)
    if cfg.schedule == "constant":
        return cfg.lr
    if cfg.schedule == "cosine":
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * progress_frac))
    if cfg.schedule == "multistep":
        return cfg.lr * cfg.gamma ** sum(progress_frac >= m for m in cfg.milestones)
    raise UserError(f"unknown schedule {cfg.schedule!r}; use multistep, cosine or constant")


def make_optimizer(cfg: OptimConfig, model: nn.Module) -> torch.optim.Optimizer:
    if cfg.name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                               nesterov=cfg.nesterov, weight_decay=cfg.weight_decay)
    if cfg.name == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise UserError(f"unknown optimizer {cfg.name!r}; use sgd or adam")
