"""`trades`: TRADES (Zhang et al. 2019), a baseline of EB-JDAT.

loss = CE(f(x), y) + beta * KL(p(.|x) || p(.|x_adv)), with x_adv from PGD ascending that KL
(start x + 0.001 N(0, I), 10 steps inside eps), beta 6, as in the official code (GitHub
yaodongyu/TRADES, train_trades_cifar10.py).

Paper preset: the official script's schedule, SGD lr 0.1, momentum 0.9, weight decay 2e-4, batch
128, 76 epochs with lr /10 from its epoch 75 (1-based: 74 epochs at 0.1, two at 0.01); its
WideResNet layout (stride on the first conv, no conv bias, shortcut from relu(bn(x)); `layout=trades`)
on unnormalised [0, 1] inputs. Deviations: WRN-28-10 (the tables' model; the code trains
WRN-34-10), eps 8/255 and step 2/255 (the code: 0.031 and 0.007), and 1,000 training images held
out to pick best.pt by PGD-10 robust accuracy (the code keeps the last epoch)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from energybench.attacks.pgd import NORMS, PGDConfig, check_budget_fields, pgd
from energybench.core.validation import Checked
from energybench.training.config import ModelConfig, OptimConfig
from energybench.training.recipes.base import Recipe, StepOutput, register_recipe
from energybench.training.recipes.presets import paper_config, smoke_config

# train_trades_cifar10.py: 76 epochs (1-based), lr 0.1, then x0.1 from epoch 75 (`epoch >= 75`): 74
# epochs at 0.1 and two at 0.01.
TRADES_OPTIM = OptimConfig(name="sgd", lr=0.1, momentum=0.9, weight_decay=2e-4, batch_size=128, epochs=76,
                           schedule="multistep", milestones=(74 / 76,), gamma=0.1)
TRADES_MODEL = ModelConfig("wrn-28-10", {"layout": "trades", "normalize": "none"})


@dataclass(frozen=True)
class TradesParams(Checked):
    LIMITS = {"beta": "[0, 1000000]", "steps": "[1, 10000]"}
    CHOICES = {"norm": NORMS}

    beta: float = 6.0
    eps: float = 8 / 255  # a pixel fraction for Linf; an L2 length (e.g. 0.5) with norm L2
    step_size: float = 2 / 255
    steps: int = 10
    norm: str = "Linf"  # the inner attack's threat model

    def __post_init__(self):
        check_budget_fields(self)  # the range depends on the norm: RangeError names recipe.<name>
        super().__post_init__()


def kl_to(clean_logits: torch.Tensor):
    """loss_fn(adv_logits, y) = sum KL(p_clean || p_adv), for the attack."""
    p_clean = F.softmax(clean_logits.detach(), dim=1)

    def loss_fn(adv_logits, y):
        return F.kl_div(F.log_softmax(adv_logits, dim=1), p_clean, reduction="sum")

    return loss_fn


@register_recipe
class Trades(Recipe):
    name = "trades"
    trains_on_attacks = True
    Params = TradesParams
    summary = "TRADES: CE(x) + beta * KL(p(x) || p(x_adv)), beta 6, PGD-10 on the KL"

    @classmethod
    def presets(cls):
        return {"paper": paper_config(cls.name, TradesParams(), optim=TRADES_OPTIM, model=TRADES_MODEL),
                "smoke": smoke_config(cls.name, TradesParams(steps=5))}

    def __init__(self, params, ctx):
        super().__init__(params, ctx)
        self.attack = PGDConfig(eps=params.eps, step_size=params.step_size, steps=params.steps,
                                random_start=False, norm=params.norm)

    def passes_per_step(self):
        return self.params.steps + 2  # attack steps, clean logits for it, the update

    def loss(self, model, x, y, generator):
        with torch.no_grad():
            model.eval()
            clean_for_attack = model(x)
            model.train()
        start = x + 0.001 * torch.randn(x.shape, generator=generator, device=x.device)
        x_adv = pgd(model, x, y, self.attack, generator, loss_fn=kl_to(clean_for_attack), x_init=start)
        logits = model(x)
        adv_logits = model(x_adv)
        robust = F.kl_div(F.log_softmax(adv_logits, 1), F.softmax(logits, 1), reduction="batchmean")
        loss = F.cross_entropy(logits, y) + self.params.beta * robust
        return StepOutput(loss, logits, {"kl": robust.detach()})
