"""BPDA+EOT (Athalye et al. 2018; as Hill et al. 2021 attack Langevin purification): PGD whose
gradient is the base classifier's, taken at the purified images and applied to the input
(Backward Pass Differentiable Approximation: purification's Jacobian taken as the identity),
averaged over `eot` parallel purifications (Expectation over Transformation).

Per iterate x' (x' = x + random start, then `steps` ascent steps, projected as PGD):
    x'_1..x'_eot      eot purifications of x' (energybench.energy.purification)
    z                 the base classifier's logits averaged over them ('logits' averaging)
    gradient          of CE(z, y) with respect to the purified images, averaged over them
    candidate break   z is wrong on x'; it counts only when the defence's own prediction
                      (the mean of `chains` purifications) is wrong too: a confirmed break
An image is robust when the defence is right on its clean image and no iterate is a confirmed
break (`any_iterate`, Hill et al.; off: only the final iterate counts, PGD's convention). Without
purification every step is exact PGD on cross-entropy: with eot 1, steps 20 and `any_iterate`
off it is PGD-20, image for image.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from energybench.attacks.pgd import PGDConfig, ascent_step, image_noise, project, start_delta
from energybench.core.progress import set_detail
from energybench.core.runtime import eval_mode, inner_loop
from energybench.energy.purification import purification_of, purify


@dataclass
class BPDAOutcome:
    """Per image (N,): right on the clean image; robust (no confirmed break); right on the final
    iterate (the defence's prediction); and how many iterates were candidate breaks. `examples`
    (N, C, H, W) float32 in [0, 1]: the iterate whose break was confirmed first, else the final
    iterate; `example_correct` (N,): whether the defence was right on it when attacked."""

    clean_correct: torch.Tensor
    robust: torch.Tensor
    adv_correct: torch.Tensor
    candidates: torch.Tensor
    examples: torch.Tensor
    example_correct: torch.Tensor


def bpda_eot(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: PGDConfig, image_seeds: torch.Tensor,
             any_iterate: bool = True) -> BPDAOutcome:
    """BPDA+EOT on `model` (a PurifiedClassifier, or any classifier: then plain PGD). x: float32
    (N, C, H, W) in [0, 1]; y (N,); cfg: budget, step, steps, norm, random start, `eot` (parallel
    purifications per gradient); image_seeds (N,): each image's random start."""
    purification = purification_of(model)
    base = model.base if purification is not None else model
    n, eot = len(x), cfg.eot
    with eval_mode(model), eval_mode(base), torch.enable_grad(), inner_loop(x.device):
        with torch.no_grad():
            clean_correct = model(x).argmax(1) == y
        robust = clean_correct.clone()
        candidates = torch.zeros(n, dtype=torch.long, device=x.device)
        lower = upper = None
        if cfg.norm == "Linf":
            lower, upper = (x - cfg.eps).clamp_(min=0.0), (x + cfg.eps).clamp_(max=1.0)
        if cfg.random_start:
            noise = image_noise(x.shape, image_seeds, 0, cfg.norm)
            x_adv = (x + start_delta(noise.to(x.device, x.dtype), cfg.eps, cfg.norm)).clamp_(0.0, 1.0)
        else:
            x_adv = x.clone()
        broken = torch.zeros(n, dtype=torch.bool, device=x.device)  # a confirmed break was seen
        examples = x_adv.detach().clone()  # the breaking iterate where there was one
        for step in range(cfg.steps + 1):
            set_detail(f"BPDA step {step}/{cfg.steps}")
            copies = x_adv.repeat(eot, *([1] * (x.dim() - 1)))
            purified = purify(base, copies, purification) if purification is not None else copies
            purified.requires_grad_(True)
            logits = base(purified)
            mean_logits = logits.view(eot, n, -1).mean(0)
            wrong = mean_logits.detach().argmax(1) != y
            candidates += wrong.long()
            if any_iterate or step == cfg.steps:
                suspect = robust & wrong
                if purification is not None and bool(suspect.any()):
                    with torch.no_grad():
                        confirmed = model(x_adv[suspect]).argmax(1) != y[suspect]
                    suspect[suspect.clone()] = confirmed
                robust &= ~suspect
                broken[suspect] = True
                examples[suspect] = x_adv[suspect].detach()
            if step == cfg.steps:
                break
            loss = F.cross_entropy(mean_logits, y, reduction="none").sum()
            (grad,) = torch.autograd.grad(loss, purified)
            grad = grad.view(eot, *x.shape).mean(0)
            x_adv = project(ascent_step(x_adv.detach(), grad, cfg.step, cfg.norm), x, cfg.eps, cfg.norm, lower, upper)
        with torch.no_grad():
            adv_correct = wrong.logical_not() if purification is None else model(x_adv).argmax(1) == y
    examples = torch.where(broken.view(-1, *([1] * (x.dim() - 1))), examples, x_adv.detach())
    return BPDAOutcome(clean_correct, robust, adv_correct, candidates, examples.float(), adv_correct & ~broken)
