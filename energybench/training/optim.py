"""The optimizer, its learning-rate schedule, and sharpness-aware minimisation's weight step.
"""

from __future__ import annotations

import contextlib
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


@torch.no_grad()
def sharpness_ascent(model: nn.Module, rho: float, adaptive: bool) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """SAM's first step (Foret et al. 2021; adaptive: ASAM, Kwon et al. 2021), from the gradients
    in `.grad`: every parameter with a gradient moves to w + e(w), with
        e(w) = rho * T(w)^2 g / ||T(w) g||,   T(w) = |w| (adaptive) or 1,
    the norm taken over all parameters at once (1e-12 added). Returns [(parameter, w)] for
    `sharpness_restore`."""
    params = [p for p in model.parameters() if p.grad is not None]
    if not params:
        return []
    scaled = [(p.abs() * p.grad if adaptive else p.grad) for p in params]
    norm = torch.norm(torch.stack([s.norm(p=2) for s in scaled]), p=2)
    scale = rho / (norm + 1e-12)
    moved = []
    for p in params:
        e_w = (p.pow(2) if adaptive else 1.0) * p.grad * scale.to(p)
        moved.append((p, p.detach().clone()))
        p.add_(e_w)
    return moved


@torch.no_grad()
def sharpness_restore(moved: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Back from w + e(w) to w exactly (the base optimizer then steps with the gradient taken there)."""
    for p, saved in moved:
        p.copy_(saved)


@contextlib.contextmanager
def frozen_running_stats(model: nn.Module):
    """Batch norm keeps its running statistics (momentum 0) inside: SAM's second forward must not
    count the batch twice (as SADA-JEM's code's disable_running_stats)."""
    saved = [(m, m.momentum) for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m, _ in saved:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum in saved:
            m.momentum = momentum
