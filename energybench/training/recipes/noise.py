"""`noise`: cross-entropy on x + N(0, sigma^2) (JEAT paper sec. 3.2, "blind adversarial training"
that gives a normal classifier some generative ability; the paper uses sigma 8, 16, 24 / 255)."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from energybench.core.validation import Checked
from energybench.training.recipes.base import Recipe, StepOutput, register_recipe
from energybench.training.recipes.common import add_noise
from energybench.training.recipes.presets import paper_config, smoke_config


@dataclass(frozen=True)
class NoiseParams(Checked):
    LIMITS = {"sigma": "[0, 1]"}

    sigma: float = 24 / 255  # pixel units; the paper's clearest generations came from 24/255


@register_recipe
class NoiseInjection(Recipe):
    name = "noise"
    Params = NoiseParams
    summary = "cross-entropy on Gaussian-noised images (JEAT sec. 3.2), sigma 24/255 by default"

    @classmethod
    def presets(cls):
        return {"paper": paper_config(cls.name, NoiseParams()), "smoke": smoke_config(cls.name, NoiseParams())}

    def loss(self, model, x, y, generator):
        logits = model(add_noise(x, self.params.sigma, generator))
        return StepOutput(F.cross_entropy(logits, y), logits)
