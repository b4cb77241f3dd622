"""L-inf attacks in [0, 1] pixel units: PGD (any steps, restarts), FGSM with random start.

One engine, `pgd`, serves every attack here; its objective is either cross-entropy (paper eq. 14)
or the joint energy E(x, y) (the energy attack, paper eq. 18). Both are *ascended*. FGSM with
random start (the JEAT inner step, Algorithm 1) is PGD with one step.

The model is put in eval mode for the attack and restored afterwards; parameters receive no
gradients (we differentiate with respect to the input only).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from energybench.energy import joint_energy
from energybench.errors import UserError
from energybench.runtime import inner_loop
from energybench.validation import Checked, parse_number

OBJECTIVES = ("ce", "energy")


@contextlib.contextmanager
def eval_mode(model: nn.Module):
    """Temporarily put `model` in eval mode; restores the previous mode on exit."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def parse_eps(value: str | float) -> float:
    """'8/255', '0.0314' or a float -> float in (0, 1]; anything else is a UserError."""
    if isinstance(value, str):
        try:
            result = parse_number(value)
        except (ValueError, ZeroDivisionError):
            raise UserError(f"cannot read eps {value!r}; write it like 8/255 or 0.0314") from None
    else:
        result = float(value)
    check_eps(result)
    return result


def check_eps(eps: float, name: str = "eps") -> None:
    if not (0.0 < eps <= 1.0):
        hint = f" (did you mean {eps:g}/255?)" if 1.0 < eps <= 255 else ""
        raise UserError(f"{name} {eps:g} is out of range: budgets are in [0, 1] pixel units{hint}")


STEP_PER_EPS = 1 / 4  # the standard protocol's 2/255 step at 8/255


def default_step(eps: float) -> float:
    """The step an attack takes when none is given: eps / 4 (8/255 -> 2/255)."""
    return eps * STEP_PER_EPS


@dataclass(frozen=True)
class PGDConfig(Checked):
    """An L-inf PGD attack. eps/step_size in [0, 1] pixel units; step_size None means
    eps / 4, so a budget given alone keeps the protocol's step-to-budget ratio."""

    LIMITS = {"eps": "(0, 1]", "step_size": "(0, 1]", "steps": "[1, inf)", "restarts": "[1, inf)"}
    CHOICES = {"objective": OBJECTIVES}

    eps: float = 8 / 255
    step_size: float | None = None
    steps: int = 20
    restarts: int = 1
    objective: str = "ce"  # "ce" (eq. 14) or "energy" (ascend E(x, y), eq. 18)
    random_start: bool = True

    @property
    def step(self) -> float:
        """The step actually taken (pixel units)."""
        return default_step(self.eps) if self.step_size is None else self.step_size

    def __post_init__(self):
        check_eps(self.eps)  # its message suggests x/255 for values like 8
        super().__post_init__()

    def resolved(self) -> "PGDConfig":
        """The same attack with its step written out (what records store)."""
        return replace(self, step_size=self.step)


def attack_loss(logits: torch.Tensor, y: torch.Tensor, objective: str) -> torch.Tensor:
    """The summed per-example quantity the attack ascends. logits (N, K), y (N,) -> scalar."""
    if objective == "ce":
        return F.cross_entropy(logits, y, reduction="sum")
    return joint_energy(logits, y).sum()


def _single_run(model, x, y, cfg: PGDConfig, generator, loss_fn, x_init) -> torch.Tensor:
    lower, upper = (x - cfg.eps).clamp_(min=0.0), (x + cfg.eps).clamp_(max=1.0)
    if x_init is not None:
        x_adv = torch.minimum(torch.maximum(x_init.detach(), lower), upper)
    elif cfg.random_start:
        noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        delta = noise.mul_(2 * cfg.eps).sub_(cfg.eps)
        x_adv = (x + delta).clamp_(0.0, 1.0)
    else:
        x_adv = x.clone()
    for _ in range(cfg.steps):
        x_adv.requires_grad_(True)
        logits = model(x_adv)
        loss = loss_fn(logits, y) if loss_fn is not None else attack_loss(logits, y, cfg.objective)
        (grad,) = torch.autograd.grad(loss, x_adv)
        x_adv = x_adv.detach().add_(grad.sign_(), alpha=cfg.step)
        x_adv = torch.minimum(torch.maximum(x_adv, lower), upper)
    return x_adv.detach()


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: PGDConfig = PGDConfig(),
    generator: torch.Generator | None = None,
    loss_fn=None,
    x_init: torch.Tensor | None = None,
) -> torch.Tensor:
    """Adversarial examples for one batch.

    x: float32 (N, C, H, W) in [0, 1]; y: int64 (N,). Returns x_adv with ||x_adv - x||_inf <= eps
    and values in [0, 1]. With restarts > 1, each example keeps the first run that fools the model
    (else the last run). `loss_fn(logits_adv, y) -> scalar` replaces the objective (e.g. TRADES'
    KL term); `x_init` replaces the random start (projected into the ball).
    """
    with eval_mode(model), torch.enable_grad(), inner_loop(x.device):
        best = _single_run(model, x, y, cfg, generator, loss_fn, x_init)
        if cfg.restarts == 1:
            return best
        with torch.no_grad():
            fooled = model(best).argmax(1) != y
        for _ in range(cfg.restarts - 1):
            if bool(fooled.all()):
                break
            candidate = _single_run(model, x, y, cfg, generator, loss_fn, None)
            with torch.no_grad():
                now_fooled = model(candidate).argmax(1) != y
            take = ~fooled
            best[take] = candidate[take]
            fooled |= now_fooled
        return best


def fgsm_rs(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float = 8 / 255,
    step_size: float | None = None,
    objective: str = "ce",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """FGSM with uniform random start (JEAT Algorithm 1 uses step_size = eps, objective='energy').

    delta ~ U(-eps, eps); delta += step * sign(grad); delta clipped to [-eps, eps]; x + delta in [0, 1].
    """
    cfg = PGDConfig(eps=eps, step_size=eps if step_size is None else step_size, steps=1,
                    objective=objective, random_start=True)
    return pgd(model, x, y, cfg, generator)


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """argmax predictions in eval mode, batched. x (N, C, H, W) -> (N,) int64."""
    with eval_mode(model):
        return torch.cat([model(x[i:i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])
