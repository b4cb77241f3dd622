"""`pgd-at`: Madry et al. (2018) adversarial training: cross-entropy on PGD examples only
(PGD-10, eps 8/255, step 2/255, uniform random start; the attack runs with the model in eval mode).

Paper preset: WRN-28-10 in the adversarial-training layout (`layout=trades`, as TRADES and
RobustBench build it) with CIFAR-10 normalisation, the common schedule (SGD 0.1, 200 epochs, lr /10
at 100 and 150) and best.pt by held-out PGD-10 accuracy (Rice et al. 2020)."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from energybench.attacks.pgd import NORMS, PGDConfig, check_budget_fields, pgd
from energybench.core.validation import Checked
from energybench.training.config import ModelConfig
from energybench.training.recipes.base import Recipe, StepOutput, register_recipe
from energybench.training.recipes.presets import paper_config, smoke_config

# The adversarial-training WideResNet (TRADES / RobustBench / Rice et al.): stride on the first conv,
# no conv bias, shortcut from relu(bn(x)); Rice et al. normalise with CIFAR-10's statistics.
PGDAT_MODEL = ModelConfig("wrn-28-10", {"layout": "trades", "normalize": "cifar"})


@dataclass(frozen=True)
class PGDATParams(Checked):
    LIMITS = {"steps": "[1, 10000]"}
    CHOICES = {"objective": ("ce", "energy"), "norm": NORMS}

    eps: float = 8 / 255  # a pixel fraction for Linf; an L2 length (e.g. 0.5) with norm L2
    step_size: float = 2 / 255  # L2: e.g. 0.1 (eps / 5, as RobustBench's L2 models)
    steps: int = 10
    objective: str = "ce"  # "energy" ascends E(x, y) instead (PreJEAT's attack, iterated)
    norm: str = "Linf"  # the inner attack's threat model

    def __post_init__(self):
        check_budget_fields(self)  # the range depends on the norm: RangeError names recipe.<name>
        super().__post_init__()


@register_recipe
class PGDAT(Recipe):
    name = "pgd-at"
    trains_on_attacks = True
    Params = PGDATParams
    summary = "Madry PGD adversarial training: CE on PGD-10 examples, eps 8/255"

    @classmethod
    def presets(cls):
        # Smoke: 5 steps of 2/255 (still reaches the 8/255 boundary) to keep CPU minutes down.
        return {"paper": paper_config(cls.name, PGDATParams(), model=PGDAT_MODEL),
                "smoke": smoke_config(cls.name, PGDATParams(steps=5))}

    def __init__(self, params, ctx):
        super().__init__(params, ctx)
        self.attack = PGDConfig(eps=params.eps, step_size=params.step_size, steps=params.steps,
                                objective=params.objective, norm=params.norm)

    def passes_per_step(self):
        return self.params.steps + 1

    def loss(self, model, x, y, generator):
        x_adv = pgd(model, x, y, self.attack, generator)
        logits = model(x_adv)
        return StepOutput(F.cross_entropy(logits, y), logits)
