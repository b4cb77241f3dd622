"""attack-sanity (the `diagnostics` suite): an unbounded attack must reach 0%, accuracy must not rise
with budget, steps or restarts, and a gradient-free attack must not beat PGD, on a subset.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from energybench.attacks import diagnostics
from energybench.attacks.autoattack import run_square
from energybench.attacks.pgd import NORMS, PGDConfig
from energybench.core.validation import Checked
from energybench.data import to_float
from energybench.metrics.base import EvalContext, Metric, MetricResult, binomial_stderr, register_metric
from energybench.metrics.robustness import checks_record, run_pgd, settle_budget


@dataclass(frozen=True)
class SanityParams(Checked):
    LIMITS = {"max_images": "[1, 10000000]", "more_steps": "[1, 100000]", "restarts": "[2, 1000]",
              "square_queries": "[1, 1000000]"}
    CHOICES = {"norm": NORMS}
    IMPLICIT: ClassVar[dict] = {"norm": "Linf"}  # as PGDConfig's

    eps: float | None = None  # None: the norm's standard budget (8/255 L-inf, 0.5 L2)
    max_images: int = 200  # the first images of --n: a modest subset
    more_steps: int = 100  # PGD-100 must not do worse than PGD-20
    restarts: int = 5  # PGD-20 with 5 restarts must not do worse than one run
    square_queries: int = 1000  # the gradient-free attack's budget per image
    norm: str = "Linf"

    def __post_init__(self):
        settle_budget(self)
        super().__post_init__()

    def gradient_passes(self, n: int, num_classes: int) -> float:
        """On its min(n, max_images) images: five PGD-20 runs (eps/2, eps, 2 eps, unbounded, margin
        loss), PGD with more_steps, PGD-20 with restarts, and Square's forward-only queries."""
        images = min(n, self.max_images)
        return images * (5 * (20 + 2 / 3) + self.more_steps + 2 / 3 + 20 * self.restarts + 2 / 3
                         + self.square_queries / 3)


def unbounded_eps(norm: str, image_shape) -> float:
    """A budget that reaches every image in [0, 1]: 1 for L-inf, the cube's diagonal sqrt(C*H*W) for L2."""
    return 1.0 if norm == "Linf" else float(np.sqrt(np.prod(image_shape)))


@register_metric
class AttackSanity(Metric):
    """The sanity checks of an attack evaluation on a subset (the `diagnostics` suite):
    PGD-20 at eps = 1 (L2: the cube's diagonal) must reach 0%; PGD-20 accuracy must not rise from eps/2 to eps to 2 eps,
    nor with 100 steps or 5 restarts (beyond one standard error); Square (gradient-free, margin
    loss) must not break images that PGD-20 left robust on both cross-entropy and the same margin
    loss. value: the number of checks raised (0 is the good answer). Cost per image, in
    forward+backward passes: about 21 x 5 (PGD-20 at eps/2, eps, 2 eps, 1, and on the margin)
    + 101 + 105 (more steps, restarts) + square_queries / 3 (forward-only queries): ~640, that is
    ~30 PGD-20 runs on max_images = 200 images."""

    name = "attack-sanity"
    summary = ("sanity of the attack (diagnostics suite, 200 images): unbounded PGD reaches 0%, "
               "accuracy monotone in eps, steps and restarts, Square does not beat PGD; value = checks raised")
    Params = SanityParams
    norms = NORMS
    unit = "checks raised"

    def compute(self, ctx: EvalContext) -> MetricResult:
        p = self.params
        sub = dataclasses.replace(ctx, data=ctx.data.subset(min(p.max_images, len(ctx.data))))
        n = len(sub.data)
        def attack(eps=p.eps, **kw):
            return PGDConfig(eps=eps, norm=p.norm, **kw)

        double = min(1.0, 2 * p.eps) if p.norm == "Linf" else 2 * p.eps
        unbounded = unbounded_eps(p.norm, sub.data.images.shape[1:])
        runs = {"eps": run_pgd(sub, attack(), "sanity: PGD-20")}
        runs["half eps"] = run_pgd(sub, attack(p.eps / 2), "sanity: PGD-20 at eps/2")
        runs["double eps"] = run_pgd(sub, attack(double), "sanity: PGD-20 at 2 eps")
        runs["more steps"] = run_pgd(sub, attack(steps=p.more_steps), f"sanity: PGD-{p.more_steps}")
        runs["restarts"] = run_pgd(sub, attack(restarts=p.restarts), f"sanity: PGD-20 x{p.restarts}")
        runs["unbounded"] = run_pgd(sub, attack(unbounded), f"sanity: PGD-20 at eps {unbounded:.3g}")
        runs["margin loss"] = run_pgd(sub, attack(objective="margin"), "sanity: PGD-20 on the margin")
        accuracy = {k: r.robust / n for k, r in runs.items()}
        stderr = {k: binomial_stderr(a, n) for k, a in accuracy.items()}
        points = [{"label": k, "value": accuracy[k], "stderr": stderr[k], "weaker_than": ref}
                  for k, ref in (("half eps", None), ("eps", "half eps"), ("double eps", "eps"),
                                 ("more steps", "eps"), ("restarts", "eps"))]
        x = to_float(sub.data.images)
        square = run_square(sub.model, x, sub.data.labels, p.eps, p.square_queries, sub.seed,
                            sub.batch_size, sub.device, norm=p.norm)
        pgd_robust = torch.from_numpy(runs["eps"].outcomes["robust"] & runs["margin loss"].outcomes["robust"])
        only_square = int((pgd_robust & ~square).sum())
        checks = {c.name: c for c in runs["eps"].checks}
        checks["unbounded"] = diagnostics.unbounded(runs["unbounded"].robust, n)
        checks["budget_monotone"] = diagnostics.budget_monotone(points)
        checks["black_box"] = diagnostics.black_box(only_square, int(pgd_robust.sum()), n)
        raised = sum(bool(c.flag) for c in checks.values())
        return MetricResult(raised, n, None,
                            {"accuracy": accuracy, "square_accuracy": float(square.float().mean()),
                             "broken_only_by_square": only_square},
                            checks_record(checks.values()))
