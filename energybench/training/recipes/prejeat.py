"""`prejeat`: Preliminary JEAT (JEAT paper sec. 3.3): cross-entropy on adversarial examples from
the energy attack (eq. 18, ascend E(x, y)) with the FGSM-with-random-start step of Algorithm 1:
delta ~ U(-eps, eps); delta += eps * sign(grad_x E(x, y)); delta clipped to [-eps, eps]."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from energybench.attacks.pgd import fgsm_rs
from energybench.core.validation import Checked
from energybench.training.recipes.base import Recipe, StepOutput, register_recipe
from energybench.training.recipes.presets import paper_config, smoke_config


@dataclass(frozen=True)
class PreJEATParams(Checked):
    LIMITS = {"eps": "(0, 1]", "step_size": "(0, 1]"}

    eps: float = 8 / 255
    step_size: float = 8 / 255  # Algorithm 1 steps by eps


@register_recipe
class PreJEAT(Recipe):
    name = "prejeat"
    trains_on_attacks = True
    Params = PreJEATParams
    summary = "PreJEAT: CE on energy-FGSM (random start) examples, eps 8/255 (JEAT eq. 18)"

    @classmethod
    def presets(cls):
        return {"paper": paper_config(cls.name, PreJEATParams()),
                "smoke": smoke_config(cls.name, PreJEATParams())}

    def passes_per_step(self):
        return 2

    def loss(self, model, x, y, generator):
        x_adv = fgsm_rs(model, x, y, self.params.eps, self.params.step_size, "energy", generator)
        logits = model(x_adv)
        return StepOutput(F.cross_entropy(logits, y), logits)
