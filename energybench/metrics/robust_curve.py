"""robust-curve: PGD-20 accuracy against the attack budget (a grid of eps), its normalised area,
and its figure.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np
import torch

from energybench.attacks import diagnostics
from energybench.attacks.pgd import BUDGET_RANGE, NORMS, PGDConfig
from energybench.core.atomic import write_npz_atomic
from energybench.core.validation import Checked, RangeError, check_value
from energybench.metrics.base import EvalContext, Metric, MetricResult, binomial_stderr, register_metric
from energybench.metrics.robust_curve_figure import robust_curve
from energybench.metrics.robustness import checks_record, run_pgd
from energybench.records.text import budget_text

DEFAULT_GRIDS = {"Linf": tuple(e / 255 for e in (0, 1, 2, 3, 4, 6, 8, 10, 12, 16)),
                 "L2": (0.0, 0.125, 0.25, 0.375, 0.5, 0.75, 1.0)}


@dataclass(frozen=True)
class CurveParams(Checked):
    LIMITS = {"steps": "[1, 10000]", "step_ratio": "(0, 1]"}
    CHOICES = {"objective": ("ce", "energy"), "norm": NORMS}
    IMPLICIT: ClassVar[dict] = {"norm": "Linf"}  # as PGDConfig's

    eps_grid: tuple[float, ...] | None = None  # None: the norm's grid (0 to 16/255 L-inf, 0 to 1 L2)
    steps: int = 20
    step_ratio: float = 0.25  # step = ratio * eps (2/255 at 8/255)
    objective: str = "ce"
    norm: str = "Linf"

    def __post_init__(self):
        if self.norm in NORMS:
            if self.eps_grid is None:
                object.__setattr__(self, "eps_grid", DEFAULT_GRIDS[self.norm])
            for eps in self.eps_grid:
                check_value("eps_grid", eps, "[0" + BUDGET_RANGE[self.norm][2:])
        super().__post_init__()
        if len(set(self.eps_grid)) < 2:
            raise RangeError("eps_grid", "needs at least two budgets, e.g. 0,4/255,8/255")

    def gradient_passes(self, n: int, num_classes: int) -> float:
        """PGD at every budget of the grid."""
        return n * len(self.eps_grid) * self.steps


def _merge(checks: dict, run_checks, eps: float) -> None:
    """Keep each always-on check once: the first raised one (with the eps it was raised at)."""
    for check in run_checks:
        kept = checks.get(check.name)
        if kept is None or (check.flag and not kept.flag):
            checks[check.name] = replace(check, evidence={**check.evidence, "at_eps": eps})


def _budget_points(grid, accuracy, stderr, norm: str = "Linf") -> list[dict]:
    """Each budget's accuracy must not exceed the next smaller budget's (within one stderr)."""
    labels = [f"eps {budget_text(e, norm)}" for e in grid]
    return [{"label": label, "value": a, "stderr": s, "weaker_than": labels[i - 1] if i else None}
            for i, (label, a, s) in enumerate(zip(labels, accuracy, stderr))]


def normalised_area(grid, accuracy) -> float:
    """Mean accuracy over [min eps, max eps] by the trapezoid rule."""
    area = sum((b - a) * (fa + fb) / 2 for a, b, fa, fb in zip(grid, grid[1:], accuracy, accuracy[1:]))
    return area / (grid[-1] - grid[0])


@torch.no_grad()
def clean_correct(ctx: EvalContext) -> int:
    return sum(int((ctx.model(x).argmax(1) == y).sum()) for x, y, _ in ctx.batches())


@register_metric
class RobustCurve(Metric):
    """PGD accuracy at each eps of a grid (eps 0 is clean accuracy; step = step_ratio * eps).
    value: the normalised area under the curve (mean accuracy over [0, max eps], trapezoid rule);
    the record's extra and raw data hold every point with its standard error."""

    name = "robust-curve"
    draw = staticmethod(robust_curve)
    summary = "PGD-20 robust accuracy against eps (0 to 16/255): normalised area under the curve, and its figure"
    Params = CurveParams
    norms = NORMS

    def compute(self, ctx: EvalContext) -> MetricResult:
        p = self.params
        grid = sorted(set(p.eps_grid))
        accuracy, checks = [], {}
        for eps in grid:
            if eps == 0:
                accuracy.append(clean_correct(ctx) / len(ctx.data))
                continue
            cfg = PGDConfig(eps=eps, step_size=p.step_ratio * eps, steps=p.steps, objective=p.objective,
                            norm=p.norm)
            run = run_pgd(ctx, cfg, f"{self.name} {budget_text(eps, p.norm)}")
            accuracy.append(run.robust / run.n)
            _merge(checks, run.checks, eps)
        n = len(ctx.data)
        stderr = [binomial_stderr(a, n) for a in accuracy]
        checks["budget_monotone"] = diagnostics.budget_monotone(_budget_points(grid, accuracy, stderr, p.norm))
        raw = ctx.artifact("npz")
        write_npz_atomic(raw, eps=np.array(grid), accuracy=np.array(accuracy), stderr=np.array(stderr))
        return MetricResult(normalised_area(grid, accuracy), n, None,
                            {"eps": grid, "accuracy": accuracy, "stderr": stderr, "raw": raw.name,
                             **({"norm": p.norm} if p.norm != "Linf" else {})},
                            checks_record(checks.values()))
