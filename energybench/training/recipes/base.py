"""What a recipe is: how it makes the examples it trains on and the loss it minimises.

Everything else (data, optimizer, schedule, precision, logging, checkpoints, resume) is the shared
loop in `energybench.training.trainer`. A recipe subclass declares its hyper-parameters as a frozen
dataclass `Params`, its `presets`, and implements `loss`.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Callable, ClassVar

import torch
import torch.nn as nn

from energybench.core.registry import Registry
from energybench.training.config import TrainConfig

RECIPES: Registry = Registry("recipe")


@dataclass
class StepOutput:
    """One training step's result.

    loss: scalar tensor to minimise; logits: (N, K) logits on the examples whose accuracy the
    log reports; stats: extra numbers to average over the epoch (e.g. energies), as detached 0-dim
    tensors (the trainer copies them to the host with the loss in one transfer) or floats; again: the same
    loss at the model's current weights on the same examples (attack and sampler outputs reused,
    nothing drawn anew), which sharpness-aware updates (optim.sam_rho) evaluate at the perturbed
    weights; None for a recipe that does not offer it.
    """

    loss: torch.Tensor
    logits: torch.Tensor
    stats: dict[str, torch.Tensor | float] = field(default_factory=dict)
    again: Callable[[], torch.Tensor] | None = None


@dataclass(frozen=True)
class NoParams:
    """A recipe with no hyper-parameters of its own."""


@dataclass
class RecipeContext:
    """What a recipe may use besides its params: the training images (uint8 (N, C, H, W) on
    `device`) and labels, the number of classes, and a seed for its own random state."""

    num_classes: int
    device: torch.device
    train_images: torch.Tensor
    train_labels: torch.Tensor
    seed: int


class Recipe(abc.ABC):
    name: ClassVar[str]
    Params: ClassVar[type] = NoParams
    summary: ClassVar[str] = ""
    # Whether it trains against an attack: then best.pt is the most robust held-out epoch (Rice et
    # al. 2020); otherwise the most accurate one, as a robust criterion would pick an early,
    # under-trained epoch of a model that is not robust anyway.
    trains_on_attacks: ClassVar[bool] = False

    def __init__(self, params, ctx: RecipeContext):
        self.params = params
        self.ctx = ctx
        self.num_classes = ctx.num_classes
        self.device = ctx.device

    def passes_per_step(self) -> int:
        """Forward+backward passes (each over one batch) a training step needs: attack or SGLD
        steps plus the update. Used by the overhead benchmark."""
        return 1

    @classmethod
    @abc.abstractmethod
    def presets(cls) -> dict[str, TrainConfig]:
        """{'paper': ..., 'smoke': ...} for this recipe."""

    @abc.abstractmethod
    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
             generator: torch.Generator) -> StepOutput:
        """x: float32 (N, 3, H, W) in [0, 1] (augmented); y: int64 (N,). Model is in train mode."""

    def state_dict(self) -> dict:
        """Recipe state saved in checkpoints (plain types and tensors only)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def register_recipe(cls: type[Recipe]) -> type[Recipe]:
    RECIPES.register(cls.name)(cls)
    return cls
