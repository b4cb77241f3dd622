"""Attacks in [0, 1] pixel units, L-inf or L2: PGD (any steps, restarts, EOT), FGSM with random start.

One engine, `pgd`, serves every attack here; its objective is either cross-entropy (paper eq. 14)
or the joint energy E(x, y) (the energy attack, paper eq. 18). Both are *ascended*. FGSM with
random start (the JEAT inner step, Algorithm 1) is PGD with one step.

Threat models (`norm`): 'Linf' (sign steps, clipping to the box of side 2 eps; uniform start in
the box) and 'L2' (steps along the gradient scaled to unit L2 length per image, projection onto
the L2 ball by rescaling; start at a uniformly random direction on the ball's surface, as
Madry et al.'s robustness library). eps is a pixel fraction for Linf (8/255) and a Euclidean
length in pixel units for L2 (0.5, RobustBench's CIFAR-10 budget).

The model is put in eval mode for the attack and restored afterwards; parameters receive no
gradients (we differentiate with respect to the input only).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from energybench.core.errors import UserError
from energybench.core.progress import set_detail
from energybench.core.runtime import derive_seed, eval_mode, inner_loop, make_generator
from energybench.core.validation import Checked, check_value, parse_number
from energybench.energy.energies import joint_energy, logit_margin

OBJECTIVES = ("ce", "energy", "margin")
NORMS = ("Linf", "L2")
DEFAULT_EPS = {"Linf": 8 / 255, "L2": 0.5}  # RobustBench's CIFAR-10 budgets
BUDGET_RANGE = {"Linf": "(0, 1]", "L2": "(0, 1000]"}  # an L2 length may exceed 1 (the cube's diagonal is sqrt(d))


def parse_eps(value: str | float, norm: str = "Linf", name: str = "eps") -> float:
    """'8/255', '0.0314' or a float -> float, checked for `norm` (`check_eps`); anything else is a
    UserError. An L2 budget written as x/255 is refused: it is a length, not a pixel fraction."""
    if isinstance(value, str):
        if norm == "L2" and "/" in value:
            raise UserError(f"{name} {value} is written as a pixel fraction, an L-inf budget; an L2 budget is a "
                            f"Euclidean length in [0, 1] pixel units, e.g. 0.5 (RobustBench's CIFAR-10 L2 budget)")
        try:
            result = parse_number(value)
        except (ValueError, ZeroDivisionError):
            example = "0.5" if norm == "L2" else "8/255 or 0.0314"
            raise UserError(f"cannot read {name} {value!r}; write it like {example}") from None
    else:
        result = float(value)
    check_eps(result, name, norm)
    return result


def check_budget_fields(params, names=("eps", "step_size")) -> None:
    """A frozen params' budget fields must lie in its `norm`'s range (BUDGET_RANGE; an unknown
    norm is checked against L-inf's and left for Checked to name): a RangeError naming the field."""
    for name in names:
        check_value(name, getattr(params, name), BUDGET_RANGE.get(params.norm, BUDGET_RANGE["Linf"]))


def check_eps(eps: float, name: str = "eps", norm: str = "Linf") -> None:
    """An attack budget (or step) must lie in its norm's range: (0, 1] for Linf, (0, 1000] for L2."""
    if norm not in NORMS:
        raise UserError(f"norm {norm!r} is not a threat model energybench attacks in; use {' or '.join(NORMS)}")
    if norm == "L2":
        if not (0.0 < eps <= 1000.0):
            raise UserError(f"{name} {eps:g} is out of range for L2: a Euclidean length in (0, 1000] pixel "
                            f"units (RobustBench's CIFAR-10 L2 budget is 0.5)")
        return
    if not (0.0 < eps <= 1.0):
        hint = f" (did you mean {eps:g}/255?)" if 1.0 < eps <= 255 else ""
        raise UserError(f"{name} {eps:g} is out of range: L-inf budgets are in [0, 1] pixel units{hint}")


STEP_PER_EPS = 1 / 4  # the standard protocol's 2/255 step at 8/255


def default_step(eps: float) -> float:
    """The step an attack takes when none is given: eps / 4 (8/255 -> 2/255)."""
    return eps * STEP_PER_EPS


@dataclass(frozen=True)
class PGDConfig(Checked):
    """A PGD attack in `norm` ('Linf' or 'L2'). eps/step_size in [0, 1] pixel units; eps None means
    the norm's standard budget (8/255 Linf, 0.5 L2) and step_size None means eps / 4, so a budget
    given alone keeps the protocol's step-to-budget ratio. `eot` > 1 averages the input gradient
    over that many forward passes per step (EOT-PGD, Athalye et al. 2018: the attack for models
    whose forward is random).

    `IMPLICIT`: protocol fields written into a record only when they differ from this value.
    Records made before `norm` existed were all L-inf, so an L-inf protocol keeps their identity
    (and reuses them); readers take a missing norm as L-inf (`energybench.records.store.protocol_norm`)."""

    LIMITS = {"steps": "[1, 10000]", "restarts": "[1, 100]", "eot": "[1, 1000]"}
    CHOICES = {"objective": OBJECTIVES, "norm": NORMS}
    IMPLICIT: ClassVar[dict] = {"norm": "Linf"}

    eps: float | None = None
    step_size: float | None = None
    steps: int = 20
    restarts: int = 1
    objective: str = "ce"  # "ce" (eq. 14), "energy" (ascend E(x, y), eq. 18) or "margin" (CW loss)
    random_start: bool = True
    eot: int = 1  # forward passes averaged per gradient step
    norm: str = "Linf"  # the threat model: "Linf" or "L2"

    @property
    def step(self) -> float:
        """The step actually taken (pixel units; an L2 length for L2)."""
        return default_step(self.eps) if self.step_size is None else self.step_size

    def __post_init__(self):
        if self.norm in NORMS:  # the budget's range depends on the norm (Checked names a wrong norm)
            if self.eps is None:
                object.__setattr__(self, "eps", DEFAULT_EPS[self.norm])
            check_eps(self.eps, "eps", self.norm)  # its message suggests x/255 for values like 8
            if self.step_size is not None:
                check_value("step_size", self.step_size, BUDGET_RANGE[self.norm])
        super().__post_init__()

    def resolved(self) -> "PGDConfig":
        """The same attack with its step written out (what records store)."""
        return replace(self, step_size=self.step)

    def gradient_passes(self, n: int, num_classes: int) -> float:
        """Image forward+backward passes on n images: every step of every restart and EOT sample,
        plus the clean and final forwards (a forward counts 1/3)."""
        return n * (self.steps * self.restarts * self.eot + 2 / 3)


def per_example_loss(logits: torch.Tensor, y: torch.Tensor, objective: str) -> torch.Tensor:
    """The quantity the attack ascends, per example: logits (N, K), y (N,) -> (N,)."""
    if objective == "ce":
        return F.cross_entropy(logits, y, reduction="none")
    if objective == "margin":  # Carlini-Wagner's: max_{k != y} z_k - z_y (Square's loss too)
        return -logit_margin(logits, y)
    return joint_energy(logits, y)


@dataclass
class AttackTrace:
    """What one PGD run saw, per image, at no extra cost (the attack computes it anyway): at each
    iterate before its step, the objective (`losses`) and the logit margin (`margins`), each a list
    of (N,) tensors; at the first iterate, whether the input gradient was all zero or held NaN/inf
    (`grad_zero`, `grad_nonfinite`, (N,) bool). With restarts, the first run is traced."""

    losses: list[torch.Tensor] = field(default_factory=list)
    margins: list[torch.Tensor] = field(default_factory=list)
    grad_zero: torch.Tensor | None = None
    grad_nonfinite: torch.Tensor | None = None

    def record(self, step: int, loss: torch.Tensor, margin: torch.Tensor, grad: torch.Tensor) -> None:
        """Kept on the attack's device (a copy to the host here would wait for the GPU at every
        step); `finish` moves everything to the CPU once the attack is over."""
        self.losses.append(loss.detach().float())
        self.margins.append(margin.detach().float())
        if step == 0:
            flat = grad.detach().flatten(1)
            self.grad_nonfinite = (~torch.isfinite(flat)).any(1)
            self.grad_zero = (flat == 0).all(1)

    def finish(self) -> "AttackTrace":
        """Everything moved to the CPU after the attack, in two transfers whatever the number of
        steps (a transfer per tensor made the host wait for the GPU about twice per step)."""
        steps = len(self.losses)
        if steps:
            rows = torch.stack(self.losses + self.margins).cpu()  # (2 * steps, N)
            self.losses, self.margins = list(rows[:steps].unbind(0)), list(rows[steps:].unbind(0))
        if self.grad_zero is not None:
            flags = torch.stack([self.grad_zero, self.grad_nonfinite]).cpu()  # (2, N) bool
            self.grad_zero, self.grad_nonfinite = flags[0], flags[1]
        return self

    def margin_trajectory(self) -> torch.Tensor:
        """(steps, N) float32 on CPU."""
        return torch.stack(self.margins).cpu() if self.margins else torch.empty(0)  # .cpu(): also before finish


def image_noise(shape: torch.Size, seeds: torch.Tensor, restart: int, norm: str = "Linf") -> torch.Tensor:
    """Start noise of `shape` (N, ...) on CPU whose row i depends only on seeds[i] and `restart`:
    an image's random start is the same whatever batch, process or device it is attacked in.
    U[0, 1) for Linf, N(0, 1) for L2 (a direction: `start_delta` scales it)."""
    draw = torch.randn if norm == "L2" else torch.rand
    rows = [draw(shape[1:], generator=make_generator(derive_seed(int(s), restart))) for s in seeds.tolist()]
    return torch.stack(rows) if rows else torch.empty(shape)


def _row_norms(t: torch.Tensor) -> torch.Tensor:
    """The L2 length of each row of t (N, ...), shaped (N, 1, ..., 1) to broadcast against t."""
    return t.flatten(1).norm(dim=1).view(-1, *([1] * (t.dim() - 1)))


def start_delta(noise: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """The random start's offset from the clean image, from `image_noise`-like noise (changed in
    place): uniform in [-eps, eps] per pixel (Linf), or eps times a random unit direction (L2)."""
    if norm == "L2":
        return noise.mul_(eps / _row_norms(noise).clamp_min(1e-12))
    return noise.mul_(2 * eps).sub_(eps)


def ascent_step(x_adv: torch.Tensor, grad: torch.Tensor, step: float, norm: str) -> torch.Tensor:
    """x_adv moved by `step` up the gradient (x_adv is detached and changed in place): the
    gradient's sign (Linf), or the gradient scaled to L2 length `step` per image (L2; a zero
    gradient leaves its image where it is)."""
    if norm == "L2":  # out of place: autograd may hand back an expanded (stride-0) gradient
        return x_adv.add_(grad / _row_norms(grad).clamp_min(1e-12), alpha=step)
    return x_adv.add_(grad.sign(), alpha=step)


def project(x_adv: torch.Tensor, x: torch.Tensor, eps: float, norm: str, lower=None, upper=None) -> torch.Tensor:
    """x_adv brought back into the eps-ball around x and into [0, 1]. Linf clips to the box (the
    precomputed `lower`/`upper` bounds when given); L2 rescales the offset to length at most eps,
    then clips to [0, 1] (clipping toward x, which lies in [0, 1], only shortens the offset)."""
    if norm == "L2":
        delta = x_adv - x
        delta.mul_((eps / _row_norms(delta).clamp_min(1e-12)).clamp_(max=1.0))
        return (x + delta).clamp_(0.0, 1.0)
    if lower is None:
        lower, upper = (x - eps).clamp_(min=0.0), (x + eps).clamp_(max=1.0)
    return torch.minimum(torch.maximum(x_adv, lower), upper)


def _input_gradient(model, x_adv, y, cfg: PGDConfig, loss_fn, traced: bool):
    """(per-example objective (N,), logit margin (N,) or None, input gradient), each averaged over
    cfg.eot forward passes. The margin is computed only when `traced`."""
    total_loss = total_margin = total_grad = None
    for _ in range(cfg.eot):
        logits = model(x_adv)
        if loss_fn is not None:  # a custom objective is a scalar: nothing per example to trace
            loss = per_example = loss_fn(logits, y)
        else:
            per_example = per_example_loss(logits, y, cfg.objective)
            loss = per_example.sum()
        (grad,) = torch.autograd.grad(loss, x_adv)
        margin = logit_margin(logits.detach(), y) if traced else None
        total_loss = per_example.detach() if total_loss is None else total_loss + per_example.detach()
        total_grad = grad if total_grad is None else total_grad + grad
        if traced:
            total_margin = margin if total_margin is None else total_margin + margin
    if cfg.eot > 1:
        total_loss, total_grad = total_loss / cfg.eot, total_grad / cfg.eot
        total_margin = None if total_margin is None else total_margin / cfg.eot
    return total_loss, total_margin, total_grad


def _single_run(model, x, y, cfg: PGDConfig, generator, loss_fn, x_init, trace=None,
                noise=None) -> torch.Tensor:
    norm = cfg.norm
    lower = upper = None
    if norm == "Linf":  # the box's bounds, computed once
        lower, upper = (x - cfg.eps).clamp_(min=0.0), (x + cfg.eps).clamp_(max=1.0)
    if x_init is not None:
        x_adv = project(x_init.detach().clone(), x, cfg.eps, norm, lower, upper)
    elif cfg.random_start:
        if noise is None:
            draw = torch.randn if norm == "L2" else torch.rand
            noise = draw(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        delta = start_delta(noise.to(x.device, x.dtype), cfg.eps, norm)
        x_adv = (x + delta).clamp_(0.0, 1.0)
    else:
        x_adv = x.clone()
    for step in range(cfg.steps):
        set_detail(f"attack step {step + 1}/{cfg.steps}")
        x_adv.requires_grad_(True)
        loss, margin, grad = _input_gradient(model, x_adv, y, cfg, loss_fn, trace is not None)
        if trace is not None:
            trace.record(step, loss, margin, grad)
        x_adv = ascent_step(x_adv.detach(), grad, cfg.step, norm)
        x_adv = project(x_adv, x, cfg.eps, norm, lower, upper)
    return x_adv.detach()


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: PGDConfig = PGDConfig(),
    generator: torch.Generator | None = None,
    loss_fn=None,
    x_init: torch.Tensor | None = None,
    trace: AttackTrace | None = None,
    image_seeds: torch.Tensor | None = None,
) -> torch.Tensor:
    """Adversarial examples for one batch.

    x: float32 (N, C, H, W) in [0, 1]; y: int64 (N,). Returns x_adv with ||x_adv - x|| <= eps in
    cfg.norm (L-inf or L2, per image) and values in [0, 1]. With restarts > 1, each example keeps the first run that fools the model
    (else the last run). `loss_fn(logits_adv, y) -> scalar` replaces the objective (e.g. TRADES'
    KL term); `x_init` replaces the random start (projected into the ball). `image_seeds` (N,)
    draws each image's random starts from its own seed (`image_noise`) instead of `generator`;
    `trace` collects the first run's per-image objective and start gradients (`AttackTrace`).
    """
    if trace is not None and loss_fn is not None:
        raise ValueError("a trace needs the per-example objective; it cannot follow a custom loss_fn")

    def noise(restart):
        return None if image_seeds is None else image_noise(x.shape, image_seeds, restart, cfg.norm)

    with eval_mode(model), torch.enable_grad(), inner_loop(x.device):
        best = _single_run(model, x, y, cfg, generator, loss_fn, x_init, trace, noise(0))
        if trace is not None:
            trace.finish()
        if cfg.restarts == 1:
            return best
        with torch.no_grad():
            fooled = model(best).argmax(1) != y
        for restart in range(1, cfg.restarts):
            if bool(fooled.all()):
                break
            candidate = _single_run(model, x, y, cfg, generator, loss_fn, None, None, noise(restart))
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
