"""What an evaluation will cost, said before it is paid: image gradient passes per metric (one
forward + backward of one image) and a time estimate from a short timed warm-up on the model.

Counted: PGD steps (x restarts x EOT samples, + the clean and final forwards), SGLD steps of
generated samples, Hutchinson probes (about 2 passes each, + 2), robustness-curve budgets. Not
counted (said so): AutoAttack (adaptive: it stops on broken images), attack-sanity's Square
queries, SSIM neighbour search and Inception features.
"""

from __future__ import annotations

import time

import torch

from energybench.attacks.pgd import PGDConfig
from energybench.energy.generation import GenerationConfig
from energybench.metrics.robust_curve import CurveParams

NOT_COUNTED = {"autoattack": "AutoAttack", "attack-sanity": "attack-sanity's Square queries",
               "memorization": "the SSIM search",
               **{m: "Inception features" for m in ("is", "fid", "kid", "precision", "recall")}}


def gradient_passes(params, n: int, num_classes: int) -> float:
    """Image forward+backward passes a metric with protocol `params` needs on n test images (a
    forward alone counts 1/3)."""
    total = 0.0
    if isinstance(params, PGDConfig):
        total += n * (params.steps * params.restarts * params.eot + 2 / 3)
    if isinstance(params, GenerationConfig):
        total += params.n_per_class * num_classes * params.steps
    if hasattr(params, "pgd_steps"):
        total += n * (params.pgd_steps + 2 / 3)
    if hasattr(params, "probes"):
        total += n * (2 + 2 * params.probes)
    if isinstance(params, CurveParams):
        total += n * len(params.eps_grid) * params.steps
    return total or n / 3


def seconds_per_pass(model, x: torch.Tensor) -> float:
    """Seconds of one image's forward+backward, timed on the batch x (N, 3, H, W) in [0, 1]
    after one untimed pass. Leaves no trace: no parameter .grad, torch's RNG state as it was."""
    def one_pass():
        inputs = x.detach().clone().requires_grad_(True)
        torch.autograd.grad(model(inputs).logsumexp(1).sum(), inputs)  # input gradient only
        if x.device.type == "cuda":
            torch.cuda.synchronize(x.device)

    devices = [x.device] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.enable_grad():
        one_pass()
        start = time.perf_counter()
        one_pass()
    return (time.perf_counter() - start) / len(x)


def plan_line(metrics: list, n: int, num_classes: int, per_pass: float) -> tuple[str, float]:
    """(the sentence announcing the work, its estimated seconds)."""
    passes = sum(gradient_passes(m.params, n, num_classes) for m in metrics)
    seconds = passes * per_pass
    left_out = sorted({NOT_COUNTED[m.name] for m in metrics if m.name in NOT_COUNTED})
    minutes = f"{seconds / 60:.0f} minutes" if seconds >= 90 else f"{seconds:.0f} s"
    return (f"plan: {', '.join(m.name for m in metrics)} on {n:,} images: about {passes:,.0f} image "
            f"gradient passes, roughly {minutes} from a timed warm-up"
            + (f" (not counted: {', '.join(left_out)})" if left_out else "")), seconds
