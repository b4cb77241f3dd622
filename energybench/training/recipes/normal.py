"""`normal`: standard training with cross-entropy on clean (augmented) images."""

from __future__ import annotations

import torch.nn.functional as F

from energybench.training.recipes.base import NoParams, Recipe, StepOutput, register_recipe
from energybench.training.recipes.presets import paper_config, smoke_config


@register_recipe
class Normal(Recipe):
    name = "normal"
    Params = NoParams
    summary = "cross-entropy on clean images (the papers' 'Normal' classifier)"

    @classmethod
    def presets(cls):
        return {"paper": paper_config(cls.name, NoParams()), "smoke": smoke_config(cls.name, NoParams())}

    def loss(self, model, x, y, generator):
        logits = model(x)
        return StepOutput(F.cross_entropy(logits, y), logits)
