"""The model registry and the layers every model shares."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from energybench.core.errors import UserError
from energybench.core.registry import Registry

MODELS: Registry = Registry("model")

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2471, 0.2435, 0.2616)


class Normalize(nn.Module):
    """(x - mean) / std per channel; x (N, C, H, W) in [0, 1]. mean=0.5, std=0.5 maps to [-1, 1]."""

    def __init__(self, mean=CIFAR10_MEAN, std=CIFAR10_STD, persistent: bool = True):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def normalization(kind: str, persistent: bool = True) -> Normalize:
    """'cifar' (per-channel CIFAR-10 statistics), 'pm1' (maps [0,1] to [-1,1], JEM's), 'none'.
    persistent=False keeps the statistics out of the state dict (a public layout's exact keys)."""
    if kind == "cifar":
        return Normalize(persistent=persistent)
    if kind == "pm1":
        return Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5), persistent)
    if kind == "none":
        return Normalize((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), persistent)
    raise UserError(f"unknown normalization {kind!r}; use cifar, pm1 or none")


class Swish(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.silu(x)


def activation(kind: str, inplace: bool = False) -> nn.Module:
    """'relu', 'leaky_relu' (slope 0.2, as in JEM) or 'swish'. `inplace` only where the input is
    not used again: a pre-activation block's input feeds its shortcut too (and without batch norm
    the activation would see that very tensor)."""
    if kind == "relu":
        return nn.ReLU(inplace=inplace)
    if kind == "leaky_relu":
        return nn.LeakyReLU(0.2, inplace=inplace)
    if kind == "swish":
        return Swish()
    raise UserError(f"unknown activation {kind!r}; use relu, leaky_relu or swish")


def norm2d(channels: int, batch_norm: bool) -> nn.Module:
    return nn.BatchNorm2d(channels) if batch_norm else nn.Identity()
