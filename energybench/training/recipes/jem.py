"""`jem`: JEM (Grathwohl et al. 2020): cross-entropy plus the p(x) term E(x) - E(x_sgld), with
x_sgld from persistent SGLD on E(x) (replay buffer 10,000, reinit 0.05 from uniform noise,
20 steps of step 1 / noise 0.01 on [-1, 1] inputs = 0.25 / 0.005 in pixel units).

Paper preset as the public code (GitHub wgrathwohl/JEM, README command and train_wrn_ebm.py):
WRN-28-10 without batch norm, leaky-ReLU(0.2), PyTorch's default layer initialisation (the code
defines a Xavier init but never applies it), inputs scaled to [-1, 1] inside the model, Adam lr
1e-4 with 1,000 warm-up steps, batch 64, 200 epochs, lr x0.3 at epochs 160 and 180; data noise
0.03 on [-1, 1] (0.015 pixel units) added unclamped; SGLD chains not clamped to the image range;
crops from 4-pixel reflect padding; 5,000 of the 50,000 training images held out for validation
(here, class-balanced and seeded; the code draws them at random). Deviations: the public code draws
the p(x) batch and the labelled batch separately, here both terms use the same batch; its
validation set picks the best clean accuracy, here best.pt is picked by PGD-10 robust accuracy
and last.pt is kept too."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from energybench.energy.energies import marginal_energy
from energybench.training.config import DataConfig, ModelConfig, OptimConfig
from energybench.training.recipes.base import Recipe, StepOutput, register_recipe
from energybench.training.recipes.common import BufferSampler, SGLDParams, add_noise
from energybench.training.recipes.presets import ebm_smoke_config, paper_config

JEM_MODEL = ModelConfig("wrn-28-10", {"batch_norm": False, "act": "leaky_relu", "normalize": "pm1",
                                      "init": "default"})
JEM_DATA = DataConfig(source=None, train_subset=None, eval_subset=1000, augment=True,
                      padding_mode="reflect", holdout=5000)
JEM_OPTIM = OptimConfig(name="adam", lr=1e-4, weight_decay=0.0, batch_size=64, epochs=200,
                        schedule="multistep", milestones=(0.8, 0.9), gamma=0.3, warmup_steps=1000)


@dataclass(frozen=True)
class JEMParams(SGLDParams):
    LIMITS = {**SGLDParams.LIMITS, "px_weight": "[0, 1000000]", "pyx_weight": "[0, 1000000]",
              "data_noise": "[0, 1]"}

    sgld_clamp: bool = False  # JEM's chains are not clamped
    px_weight: float = 1.0
    pyx_weight: float = 1.0
    data_noise: float = 0.015  # pixel units (JEM's sigma 0.03 on [-1, 1]), added unclamped


@register_recipe
class JEM(Recipe):
    name = "jem"
    Params = JEMParams
    summary = "JEM: CE + (E(x) - E(x_sgld)), persistent SGLD from a replay buffer"

    @classmethod
    def presets(cls):
        # Smoke: chains from uniform noise diverged at this scale (p(x) gap past -1e4 in epoch 4,
        # four roll-backs); they start from the class-conditional Gaussian instead (as JEM++ does).
        smoke = JEMParams(sgld_steps=10, buffer_size=2000, sgld_init="class-gaussian", sgld_clamp=True)
        return {"paper": paper_config(cls.name, JEMParams(), model=JEM_MODEL, optim=JEM_OPTIM,
                                      data=JEM_DATA),
                "smoke": ebm_smoke_config(cls.name, smoke, JEM_OPTIM)}

    def __init__(self, params, ctx):
        super().__init__(params, ctx)
        self.sampler = BufferSampler(params, ctx)

    def passes_per_step(self):
        return self.params.sgld_steps + 2  # SGLD steps, update on data and on samples

    def loss(self, model, x, y, generator):
        x = add_noise(x, self.params.data_noise, generator, clamp=False)
        x_sgld = self.sampler.negatives(model, len(x), generator)
        logits = model(x)
        e_data = marginal_energy(logits).mean()
        e_sgld = marginal_energy(model(x_sgld)).mean()
        ce = F.cross_entropy(logits, y)
        gap = e_data - e_sgld
        loss = self.params.pyx_weight * ce + self.params.px_weight * gap
        stats = {"loss_pyx": ce.detach(), "E_data": e_data.detach(), "E_sgld": e_sgld.detach(),
                 "gap_px": gap.detach()}
        return StepOutput(loss, logits, stats)

    def state_dict(self):
        return self.sampler.state_dict()

    def load_state_dict(self, state):
        self.sampler.load_state_dict(state)
