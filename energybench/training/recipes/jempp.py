"""`jempp`: JEM++ (Yang and Ji 2021): JEM's objective, CE + (E(x) - E(x_q)), with negatives from
proximal (YOPO-style) Langevin and an informative initialisation.

Sampler, as the public code (GitHub sndnyang/JEMPP, train_jempp.py `sample_q`, scripts/jempp_cifar10.sh):
persistent chains in a replay buffer of 10,000, reinitialised with probability 0.05 from the
class-conditional Gaussians fitted on the training images (informative initialisation, also the
buffer's start); 10 outer steps, each taking the input gradient of E(x) once and then 5 inner steps
along it that ascend the first layer's Hamiltonian with lr 0.2, each clipped to [-1, 1] and clamped
to the image range, no noise (sgld_std 0), the model in train mode (batch statistics). The first
layer is affine, so each inner step is the same clipped step: in pixel units step 0.05 along the
gradient clipped to +-2, taken 5 times (`sgld_repeats`), no noise.

Paper preset as the code's script: WRN-28-10 with batch norm, leaky-ReLU(0.2), inputs scaled to
[-1, 1] inside the model; SGD lr 0.1, momentum 0.9, weight decay 4e-4 (the script keeps the
default), batch 64, 150 epochs, lr x0.2 at epochs 50, 100 and 125, 1,000 warm-up steps; data noise
0.03 on [-1, 1] (0.015 in pixels) added unclamped; crops from reflect padding and flips; 5,000
training images held out.

Deviations, each deliberate: one batch for both terms (the code draws the p(x) batch and the
labelled batch from two loaders); batch norm keeps PyTorch's momentum 0.1 (the code: 0.9); best.pt
is picked by PGD-10 robust accuracy on the held-out images, last.pt is kept too (the code picks
clean validation accuracy).
"""

from __future__ import annotations

from dataclasses import dataclass

from energybench.training.config import ModelConfig, OptimConfig
from energybench.training.recipes.base import register_recipe
from energybench.training.recipes.common import JEMPP_SAMPLER
from energybench.training.recipes.jem import JEM, JEM_DATA, JEMParams
from energybench.training.recipes.presets import ebm_smoke_config, paper_config

JEMPP_MODEL = ModelConfig("wrn-28-10", {"batch_norm": True, "act": "leaky_relu", "normalize": "pm1",
                                        "init": "default"})
JEMPP_OPTIM = OptimConfig(name="sgd", lr=0.1, momentum=0.9, weight_decay=4e-4, batch_size=64, epochs=150,
                          schedule="multistep", milestones=(50 / 150, 100 / 150, 125 / 150), gamma=0.2,
                          warmup_steps=1000)


@dataclass(frozen=True)
class JEMPPParams(JEMParams):
    sgld_steps: int = 10
    sgld_step_size: float = JEMPP_SAMPLER["sgld_step_size"]  # pyld_lr 0.2 on [-1, 1] inputs
    sgld_noise: float = JEMPP_SAMPLER["sgld_noise"]
    sgld_grad_clip: float = JEMPP_SAMPLER["sgld_grad_clip"]  # [-1, 1] on [-1, 1] inputs
    sgld_repeats: int = JEMPP_SAMPLER["sgld_repeats"]  # the inner (proximal) steps per outer gradient
    sgld_init: str = "class-gaussian"
    sgld_clamp: bool = JEMPP_SAMPLER["sgld_clamp"]
    sgld_train_mode: bool = True


@register_recipe
class JEMPP(JEM):
    name = "jempp"
    Params = JEMPPParams
    summary = "JEM++: JEM's objective, proximal Langevin (10 x 5 clipped steps) from the class Gaussians"

    @classmethod
    def presets(cls):
        smoke = JEMPPParams(sgld_steps=5, buffer_size=2000)
        return {"paper": paper_config(cls.name, JEMPPParams(), model=JEMPP_MODEL, optim=JEMPP_OPTIM,
                                      data=JEM_DATA),
                "smoke": ebm_smoke_config(cls.name, smoke, JEMPP_OPTIM)}
