"""Pieces several recipes share: the SGLD parameter block and replay-buffer negatives, input noise,
an un-augmented batch of training images."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from energybench.core.runtime import derive_seed, make_generator
from energybench.core.validation import Checked
from energybench.data import to_float
from energybench.energy.sgld import ReplayBuffer, SGLDConfig, make_init, sgld
from energybench.training.recipes.base import RecipeContext


@dataclass(frozen=True)
class SGLDParams(Checked):
    """Persistent SGLD on E(x) from a replay buffer, in pixel units (see energybench.energy.sgld).

    Defaults are JEM's: 20 steps of step 1 and noise 0.01 on [-1, 1] inputs (0.25 and 0.005 in
    pixel units), buffer 10,000, reinitialisation 0.05 from uniform noise."""

    LIMITS = {"sgld_steps": "[1, 100000]", "sgld_step_size": "(0, 1000]", "sgld_noise": "[0, 10]",
              "buffer_size": "[1, 10000000]", "reinit_prob": "[0, 1]", "sgld_grad_clip": "[0, 1000]",
              "sgld_repeats": "[1, 1000]"}
    CHOICES = {"sgld_init": ("uniform", "class-gaussian")}

    sgld_steps: int = 20
    sgld_step_size: float = 0.25
    sgld_noise: float = 0.005
    buffer_size: int = 10_000
    reinit_prob: float = 0.05
    sgld_init: str = "uniform"  # or "class-gaussian" (fitted on the training split)
    sgld_clamp: bool = True  # keep chains in [0, 1] after every step (JEM's code does not)
    sgld_train_mode: bool = False  # sample in train mode (batch statistics), as JEM++ / EB-JDAT's code
    sgld_grad_clip: float = 0.0  # clip gradient coordinates to +-this (JEM++ / SADA-JEM: 2); 0: none
    sgld_repeats: int = 1  # steps taken along each gradient (JEM++'s proximal inner steps: 5)


# JEM++'s proximal Langevin in pixel units: 5 inner steps of 0.2 on the gradient clipped to [-1, 1]
# on [-1, 1] inputs per outer gradient, no noise (energybench.training.recipes.jempp; EB-JDAT's code too)
JEMPP_SAMPLER = dict(sgld_step_size=0.05, sgld_noise=0.0, sgld_grad_clip=2.0, sgld_repeats=5, sgld_clamp=True)


class BufferSampler:
    """Draws SGLD negatives x_sgld ~ p_theta(x) from a replay buffer (JEM's PCD)."""

    def __init__(self, params: SGLDParams, ctx: RecipeContext):
        init = make_init(params.sgld_init, ctx.train_images, ctx.train_labels, ctx.num_classes,
                         ctx.device)
        gen = make_generator(derive_seed(ctx.seed, 7), ctx.device)
        self.buffer = ReplayBuffer(params.buffer_size, init, ctx.num_classes, ctx.device,
                                   params.reinit_prob, gen)
        self.cfg = SGLDConfig(steps=params.sgld_steps, step_size=params.sgld_step_size,
                              noise=params.sgld_noise, target="marginal", clamp=params.sgld_clamp,
                              train_mode=params.sgld_train_mode, grad_clip=params.sgld_grad_clip,
                              repeats=params.sgld_repeats)

    def negatives(self, model, n: int, generator: torch.Generator) -> torch.Tensor:
        """n samples after `sgld_steps` SGLD steps on E(x); written back to the buffer."""
        x0, idx = self.buffer.draw(n, generator)
        x = sgld(model, x0, self.cfg, generator)
        self.buffer.write(idx, x)
        return x

    def state_dict(self) -> dict:
        return {"replay_buffer": self.buffer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if "replay_buffer" in state:
            self.buffer.load_state_dict(state["replay_buffer"])


def unaugmented_batch(ctx: RecipeContext, n: int, generator: torch.Generator) -> torch.Tensor:
    """n training images drawn at random without replacement, not augmented: float32
    (n, C, H, W) in [0, 1] (SADA-JEM's batch for the generative term)."""
    total = len(ctx.train_images)
    idx = torch.randperm(total, generator=generator, device=generator.device)[:min(n, total)]
    return to_float(ctx.train_images[idx.to(ctx.train_images.device)])


def add_noise(x: torch.Tensor, sigma: float, generator: torch.Generator,
              clamp: bool = True) -> torch.Tensor:
    """x + sigma * N(0, I), clamped to [0, 1] unless clamp=False (JEM's and JEM++'s code add their
    training noise after normalisation, unclamped). sigma in pixel units; 0 returns x."""
    if sigma == 0:
        return x
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    noisy = x + sigma * noise
    return noisy.clamp_(0.0, 1.0) if clamp else noisy
