"""Test-time purification: a classifier that first moves its input down its own energy E(x) by
Langevin dynamics, then classifies (Hill et al. 2021, "Stochastic Security"; the BPDA+EOT
configuration of the SADA-JEM code, bpda_eot_attack.py / bpda_eot_attack_jem.json).

One purification step (x in [0, 1] pixel units, not clamped, as those codes):
    x <- x - step_size * grad_x E(x) + noise * N(0, I)
Defaults are that configuration's: step 1 on the gradient and noise 0.01 on [-1, 1] inputs, i.e.
step_size 0.25 and noise 0.005 in pixel units; the defence predicts with the logits averaged over
`chains` parallel purifications of each image (its `eot_defense_reps` 150, `eot_defense_ave`
'logits'). The number of steps is the user's (the configuration ships 0, purification off).

The purified classifier is randomized: its noise comes from torch's global generator, which the
evaluation seeds per batch. Its input gradient, where one is asked for (an attack through the
whole defence), follows one purification per forward (an attack averages several with EOT),
differentiating through every Langevin step; the BPDA+EOT metric instead takes the base
classifier's gradient at the purified images (energybench.metrics.bpda).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn

from energybench.core.runtime import eval_mode
from energybench.core.validation import Checked
from energybench.energy.energies import marginal_energy

CHUNK_IMAGES = 2048  # purified images per forward when predicting (memory bound, not a result)


@dataclass(frozen=True)
class PurificationConfig(Checked):
    """steps 0 is the plain classifier (no purification, deterministic)."""

    LIMITS = {"steps": "[0, 100000]", "step_size": "(0, 1000]", "noise": "[0, 10]", "chains": "[1, 10000]"}

    steps: int = 0
    step_size: float = 0.25  # 1 on [-1, 1] inputs
    noise: float = 0.005  # 0.01 on [-1, 1] inputs
    chains: int = 150  # purifications averaged per prediction (logits)

    @property
    def active(self) -> bool:
        return self.steps > 0

    def record(self) -> dict | None:
        """What records name: every value, or None for the plain classifier."""
        return asdict(self) if self.active else None

    def passes_per_image(self) -> float:
        """Forward+backward passes of one prediction: chains x (steps + a forward)."""
        return self.chains * (self.steps + 1 / 3)


def purify(model: nn.Module, x: torch.Tensor, cfg: PurificationConfig, differentiable: bool = False) -> torch.Tensor:
    """cfg.steps Langevin steps on E(x) from x (N, C, H, W); one chain per row. With
    `differentiable` the result keeps the graph through every step (second-order), else it is
    detached. Noise from torch's global generator."""
    out = x if differentiable else x.detach()
    with torch.enable_grad():
        for _ in range(cfg.steps):
            if not out.requires_grad:
                out = out.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(marginal_energy(model(out)).sum(), out, create_graph=differentiable)
            noise = torch.randn_like(out)
            out = out - cfg.step_size * grad + cfg.noise * noise
            if not differentiable:
                out = out.detach()
    return out if differentiable else out.detach()


class PurifiedClassifier(nn.Module):
    """`base` behind purification. forward(x (N, C, H, W) in [0, 1]) -> (N, K) logits: without an
    input gradient, the mean logits of `chains` purifications per image (the defence's
    prediction); with one (x requires grad), the logits of one purification, differentiated
    through it. `base` is kept in eval mode."""

    def __init__(self, base: nn.Module, cfg: PurificationConfig):
        super().__init__()
        self.base = base
        self.purification = cfg

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.purification
        with eval_mode(self.base):
            if torch.is_grad_enabled() and x.requires_grad:
                return self.base(purify(self.base, x, cfg, differentiable=True))
            return self.predict(x)

    @torch.no_grad()
    def predict(self, x: torch.Tensor, chains: int | None = None) -> torch.Tensor:
        """Mean logits over `chains` (default cfg.chains) purifications of each image: (N, K)."""
        chains = chains or self.purification.chains
        total = None
        per_chunk = max(1, CHUNK_IMAGES // max(1, len(x)))
        with eval_mode(self.base):
            for start in range(0, chains, per_chunk):
                reps = min(per_chunk, chains - start)
                purified = purify(self.base, x.repeat(reps, *([1] * (x.dim() - 1))), self.purification)
                logits = self.base(purified).view(reps, len(x), -1).sum(0)
                total = logits if total is None else total + logits
        return total / chains


def purification_of(model: nn.Module) -> PurificationConfig | None:
    """The active purification a model applies, or None for a plain classifier."""
    cfg = getattr(model, "purification", None)
    return cfg if isinstance(cfg, PurificationConfig) and cfg.active else None
