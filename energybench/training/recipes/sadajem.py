"""`sadajem`: SADA-JEM (Yang et al. 2023): JEM's objective trained with sharpness-aware
minimisation, and data augmentation kept out of the generative term.

    loss = px_weight * (E(x_px) - E(x_q)) + pyx_weight * CE(f(x), y)

x: the augmented classification batch; x_px: a separate batch of *un-augmented* training images
(SADA-JEM's rule: the p(x) term sees the data as it is, augmentation serves only the classifier);
x_q: replay-buffer negatives. Each update is SAM's (adaptive: ASAM, as the code for rho >= 0.5):
the gradient of the same loss, on the same x_px, x_q and x, taken at w + e(w) with batch norm's
running statistics frozen, updates w (optim.sam_rho, optim.sam_adaptive).

As the public code (GitHub sndnyang/SADAJEM, train_sadajem.py, sam.py, scripts/sadajem_cifar10.sh):
negatives from 5 steps of Langevin without noise, lr 1 on the gradient clipped to [-1, 1] on
[-1, 1] inputs (step 0.25, clip 2 in pixel units), chains clamped to the image range, the model in
train mode; replay buffer 10,000, reinit 0.05 from the class-conditional Gaussians (also the
buffer's start); p(x) batch 64, classification batch 128; no data noise (sigma 0); SAM rho 2,
adaptive; SGD lr 0.1, momentum 0.9, weight decay 5e-4, 200 epochs, lr x0.2 at epochs 60, 120 and
180, 1,000 warm-up steps; WRN-28-10 with batch norm, leaky-ReLU(0.2), [-1, 1] inputs; crops from
reflect padding and flips.

Deviations, each deliberate: the p(x) batch is drawn at random from the training images each step
(the code cycles a shuffled loader); 5,000 training images are held out and best.pt is picked by
PGD-10 robust accuracy on them (the code holds none out and keeps the best test accuracy); batch
norm keeps PyTorch's momentum 0.1 (the code: 0.9).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from energybench.energy.energies import marginal_energy
from energybench.training.config import ModelConfig, OptimConfig
from energybench.training.recipes.base import Recipe, StepOutput, register_recipe
from energybench.training.recipes.common import BufferSampler, SGLDParams, add_noise, unaugmented_batch
from energybench.training.recipes.jem import JEM_DATA
from energybench.training.recipes.presets import ebm_smoke_config, paper_config

SADAJEM_MODEL = ModelConfig("wrn-28-10", {"batch_norm": True, "act": "leaky_relu", "normalize": "pm1",
                                          "init": "default"})
SADAJEM_OPTIM = OptimConfig(name="sgd", lr=0.1, momentum=0.9, weight_decay=5e-4, batch_size=128, epochs=200,
                            schedule="multistep", milestones=(60 / 200, 120 / 200, 180 / 200), gamma=0.2,
                            warmup_steps=1000, sam_rho=2.0, sam_adaptive=True)


@dataclass(frozen=True)
class SADAJEMParams(SGLDParams):
    LIMITS = {**SGLDParams.LIMITS, "px_weight": "[0, 1000000]", "pyx_weight": "[0, 1000000]",
              "px_batch": "[1, 100000]", "data_noise": "[0, 1]"}

    sgld_steps: int = 5
    sgld_step_size: float = 0.25  # sgld_lr 1 on [-1, 1] inputs
    sgld_noise: float = 0.0
    sgld_grad_clip: float = 2.0  # the gradient on [-1, 1] inputs clipped to [-1, 1]
    sgld_init: str = "class-gaussian"
    sgld_train_mode: bool = True
    px_weight: float = 1.0
    pyx_weight: float = 1.0
    px_batch: int = 64  # un-augmented images for the p(x) term; as many negatives
    data_noise: float = 0.0  # pixel units, added unclamped to the p(x) batch


@register_recipe
class SADAJEM(Recipe):
    name = "sadajem"
    Params = SADAJEMParams
    summary = "SADA-JEM: JEM's objective with SAM updates, p(x) on un-augmented images"

    @classmethod
    def presets(cls):
        return {"paper": paper_config(cls.name, cls.Params(), model=SADAJEM_MODEL, optim=SADAJEM_OPTIM,
                                      data=JEM_DATA),
                "smoke": ebm_smoke_config(cls.name, cls.Params(buffer_size=2000), SADAJEM_OPTIM)}

    def __init__(self, params, ctx):
        super().__init__(params, ctx)
        self.sampler = BufferSampler(params, ctx)

    def passes_per_step(self):
        # SGLD steps; data, samples and batch forward+backward twice (SAM)
        return self.params.sgld_steps + 2 * 3

    def draws(self, model, x, y, generator) -> dict:
        """What one step draws before its loss: the p(x) batch and the negatives (and, in
        subclasses, adversarial examples). Fixed for both SAM passes."""
        p = self.params
        x_px = add_noise(unaugmented_batch(self.ctx, p.px_batch, generator), p.data_noise, generator, clamp=False)
        return {"x_px": x_px, "x_q": self.sampler.negatives(model, len(x_px), generator)}

    def terms(self, model, x, y, drawn: dict) -> tuple:
        """(loss, logits on x, stats) from the step's draws, at the model's current weights."""
        p = self.params
        logits = model(x)
        e_data = marginal_energy(model(drawn["x_px"])).mean()
        e_q = marginal_energy(model(drawn["x_q"])).mean()
        ce = F.cross_entropy(logits, y)
        gap = e_data - e_q
        stats = {"loss_pyx": ce.detach(), "E_data": e_data.detach(), "E_sgld": e_q.detach(), "gap_px": gap.detach()}
        return p.px_weight * gap + p.pyx_weight * ce, logits, stats

    def loss(self, model, x, y, generator):
        drawn = self.draws(model, x, y, generator)
        loss, logits, stats = self.terms(model, x, y, drawn)
        return StepOutput(loss, logits, stats, again=lambda: self.terms(model, x, y, drawn)[0])

    def state_dict(self):
        return self.sampler.state_dict()

    def load_state_dict(self, state):
        self.sampler.load_state_dict(state)
