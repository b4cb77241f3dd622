"""Fisher scores (JEAT paper eq. 23-24) over test images:

    JFS = E_x [ 1/2 ||grad_x E(x, y)||^2 - tr(hess_x E(x, y)) ]      (`jfs`)
    MFS = E_x [ 1/2 ||grad_x E(x)||^2    - tr(hess_x E(x))    ]      (`mfs`)

in [0, 1] pixel units. The gradient term is exact; the trace is Hutchinson's estimator
tr(H) = E_v[v^T H v] with Rademacher probes v, each Hessian-vector product by double backprop
(so k probes cost about k + 1 backward passes), or exact (one product per input dimension:
for small inputs or subsets). For piecewise-linear networks (ReLU, no smooth parts) the Hessian
of f_y is zero almost everywhere, so the trace term of JFS is often exactly 0: the records carry
both terms so a reader can see which one a number comes from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from energybench.core.progress import progress
from energybench.core.runtime import derive_seed, make_generator
from energybench.core.validation import Checked
from energybench.energy.energies import joint_energy, marginal_energy, refuse_nonfinite
from energybench.metrics.base import EvalContext, Metric, MetricResult, Shard, register_metric
from energybench.records.outcomes import OutcomeLog, write_outcomes


def energy_of(logits: torch.Tensor, y: torch.Tensor, kind: str) -> torch.Tensor:
    return joint_energy(logits, y) if kind == "joint" else marginal_energy(logits)


def fisher_terms(model, x: torch.Tensor, y: torch.Tensor, kind: str, probes: int,
                 generator: torch.Generator | None, exact: bool = False):
    """Per-image (1/2 ||grad E||^2, tr(hess E)), each (N,). x: (N, C, H, W) float32.

    Images are independent in eval mode, so one backward of the summed energy gives every
    image's gradient, and one Hessian-vector product per probe serves the whole batch. An image
    whose energy is not finite gets NaN.
    """
    x = x.detach().requires_grad_(True)
    per_image = energy_of(model(x), y, kind)
    (grad,) = torch.autograd.grad(per_image.sum(), x, create_graph=True)
    half_sq = 0.5 * grad.detach().flatten(1).pow(2).sum(1)
    # an image whose energy is NaN or infinite has no score (its derivatives may still look finite)
    half_sq = torch.where(torch.isfinite(per_image.detach()), half_sq, torch.full_like(half_sq, float("nan")))
    if not grad.requires_grad:  # the energy is affine in x here: zero Hessian
        return half_sq, torch.zeros_like(half_sq)
    dim = x[0].numel()
    trace = torch.zeros_like(half_sq)
    if exact:
        for i in range(dim):
            v = torch.zeros_like(x).flatten(1)
            v[:, i] = 1.0
            (hv,) = torch.autograd.grad(grad, x, v.view_as(x), retain_graph=True, materialize_grads=True)
            trace += hv.flatten(1)[:, i].detach()
        return half_sq, trace
    for _ in range(probes):
        v = torch.randint(0, 2, x.shape, generator=generator, device=x.device).mul_(2).sub_(1)
        v = v.to(x.dtype)
        (hv,) = torch.autograd.grad(grad, x, v, retain_graph=True, materialize_grads=True)
        trace += (hv * v).flatten(1).sum(1).detach()
    return half_sq, trace / probes


@dataclass(frozen=True)
class FisherParams(Checked):
    LIMITS = {"probes": "[1, 100000]"}

    probes: int = 10  # Rademacher probes per image for the trace
    exact_trace: bool = False  # one Hessian-vector product per input dimension instead

    def gradient_passes(self, n: int, num_classes: int) -> float:
        """About two passes per Hutchinson probe (a Hessian-vector product), plus the gradient."""
        return n * (2 + 2 * self.probes)


class FisherScore(Metric):
    Params = FisherParams
    unit = "score"
    version = 2  # 2: per-image scores beside the record
    estimator_params = ("probes", "exact_trace")  # both estimate the same trace
    kind: str

    shardable = True

    def shard(self, ctx: EvalContext) -> Shard:
        log = OutcomeLog(("grad_term", "trace_term"))
        was_training = ctx.model.training
        ctx.model.eval()
        try:
            for x, y, offset in progress(ctx.batches(), desc=self.name, total=len(ctx.batch_offsets())):
                gen = make_generator(derive_seed(ctx.seed, offset), ctx.device)
                with torch.enable_grad():
                    g, t = fisher_terms(ctx.model, x, y, self.kind, self.params.probes, gen,
                                        self.params.exact_trace)
                log.add(index=torch.arange(offset, offset + len(y)), grad_term=g.double(), trace_term=t.double())
        finally:
            ctx.model.train(was_training)
        return Shard(log.columns())

    def finish(self, ctx: EvalContext, shard: Shard) -> MetricResult:
        g = torch.from_numpy(shard.columns["grad_term"]).double()
        t = torch.from_numpy(shard.columns["trace_term"]).double()
        per_image = g - t
        n = len(per_image)
        refuse_nonfinite(self.name, (~torch.isfinite(per_image)).numpy())
        write_outcomes(ctx.artifact("outcomes.npz"), {"index": shard.columns["index"], "score": per_image.numpy()})
        sd = lambda v: float(v.std(unbiased=True)) / math.sqrt(n) if n > 1 else float("nan")  # noqa: E731
        return MetricResult(float(per_image.mean()), n, sd(per_image), {
            "grad_term": float(g.mean()), "grad_term_stderr": sd(g),
            "trace_term": float(t.mean()), "trace_term_stderr": sd(t),
            "trace_estimator": "exact" if self.params.exact_trace else "hutchinson-rademacher",
            "input_units": "[0, 1] pixels", "outcomes": ctx.artifact("outcomes.npz").name,
        })


@register_metric
class JointFisherScore(FisherScore):
    name = "jfs"
    summary = "joint Fisher score E[1/2 ||grad E(x,y)||^2 - tr hess E(x,y)] (eq. 23)"
    kind = "joint"


@register_metric
class MarginalFisherScore(FisherScore):
    name = "mfs"
    summary = "marginal Fisher score E[1/2 ||grad E(x)||^2 - tr hess E(x)] (eq. 24)"
    kind = "marginal"
