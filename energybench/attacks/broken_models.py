"""Models broken on purpose, each in one way that makes a robustness evaluation overstate: for
checking that the attack-failure indicators (energybench.attacks.diagnostics) notice, in the tests,
the benchmarks and the tutorial on wrong robustness numbers. Each wraps a working classifier
mapping [0, 1] images (N, C, H, W) to logits (N, K).

    Quantised       rounds its input to 8 bits first: a zero input gradient everywhere
                    (unavailable gradients)
    FreshNoise      fresh input noise and a random gradient gain on every forward, as randomized
                    preprocessing defences do (randomized forward)
    Softmaxed       returns probabilities instead of logits (probability output)
    NoiseGradient   a deterministic forward whose input gradient is noise of the true gradient's
                    scale: never zero, never NaN, and useless to an attack (gradient direction)
"""

from __future__ import annotations

import torch
import torch.nn as nn


class _Wrapper(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model


class Quantised(_Wrapper):
    """torch.round has a zero gradient everywhere."""

    def forward(self, x):
        return self.model(torch.round(x * 255) / 255)


class FreshNoise(_Wrapper):
    """x + sigma * noise, with the input gradient scaled by 1 + gain * noise (one sample's gradient
    is mostly noise)."""

    def __init__(self, model: nn.Module, sigma: float = 0.01, gain: float = 3.0):
        super().__init__(model)
        self.sigma, self.gain = sigma, gain

    def forward(self, x):
        g = self.gain * torch.randn_like(x)
        return self.model(x + self.sigma * torch.randn_like(x) + g * x - g * x.detach())


class Softmaxed(_Wrapper):
    def forward(self, x):
        return torch.softmax(self.model(x), 1)


class _GradientNoise(torch.autograd.Function):
    """Identity forward; the backward hands back Gaussian noise of the incoming gradient's scale."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return torch.randn_like(grad) * grad.abs().mean()


class NoiseGradient(_Wrapper):
    def forward(self, x):
        return self.model(_GradientNoise.apply(x))
