"""Robust accuracy under L-inf PGD (the standard protocol): `pgd20` (ascends cross-entropy, eq. 14)
and `pgd20-energy` (ascends E(x, y), the energy attack of eq. 18; JEAT Table 1)."""

from __future__ import annotations

import torch

from dataclasses import dataclass

from energybench.attacks import PGDConfig, pgd
from energybench.validation import Checked
from energybench.metrics.base import (
    EvalContext, Metric, MetricResult, binomial_stderr, register_metric,
)
from energybench.progress import progress
from energybench.runtime import derive_seed, make_generator


class PGDRobustAccuracy(Metric):
    """Accuracy on PGD adversarial examples; the image counts as robust only if the model is
    right on the clean image too (its adversarial example starts inside the eps-ball)."""

    Params = PGDConfig  # the protocol: eps 8/255, step 2/255, 20 steps, random start, CE

    def compute(self, ctx: EvalContext) -> MetricResult:
        cfg = self.params
        robust = clean = 0
        total = -(-len(ctx.data) // ctx.batch_size)
        for x, y, offset in progress(ctx.batches(), desc=self.name, total=total):
            gen = make_generator(derive_seed(ctx.seed, offset), ctx.device)
            x_adv = pgd(ctx.model, x, y, cfg, gen)
            with torch.no_grad():
                right_clean = ctx.model(x).argmax(1) == y
                right_adv = ctx.model(x_adv).argmax(1) == y
            clean += int(right_clean.sum())
            robust += int((right_clean & right_adv).sum())
        n = len(ctx.data)
        acc = robust / n
        return MetricResult(acc, n, binomial_stderr(acc, n), {"clean_accuracy": clean / n})


@register_metric
class PGD20(PGDRobustAccuracy):
    name = "pgd20"
    summary = "robust accuracy, L-inf PGD-20 on cross-entropy, eps 8/255, step 2/255, random start"


@dataclass(frozen=True)
class EnergyPGDConfig(PGDConfig):
    objective: str = "energy"


@register_metric
class PGD20Energy(PGDRobustAccuracy):
    name = "pgd20-energy"
    summary = "robust accuracy, L-inf PGD-20 ascending E(x, y) (eq. 18), eps 8/255, step 2/255"
    Params = EnergyPGDConfig


@dataclass(frozen=True)
class AutoAttackParams(Checked):
    LIMITS = {"eps": "(0, 1]", "max_images": "[1, inf)", "chunk_size": "[1, inf)"}
    CHOICES = {"version": ("standard", "plus", "rand")}

    eps: float = 8 / 255
    version: str = "standard"  # APGD-CE, APGD-T, FAB-T, Square
    max_images: int = 1000  # the first images of --n (AutoAttack is slow); full test set at paper scale
    chunk_size: int = 250  # images per resumable unit; each chunk's result is saved when it ends


@register_metric
class AutoAttackMetric(Metric):
    name = "autoattack"
    summary = "robust accuracy under standard AutoAttack (pyautoattack), L-inf 8/255, first 1,000 images"
    Params = AutoAttackParams
    version = 2  # chunked runs (v1: one pyautoattack run over all images)
    incidental_params = ("max_images", "chunk_size")  # max_images shows as the record's n

    def compute(self, ctx: EvalContext) -> MetricResult:
        from energybench.autoattack import run_autoattack

        p = self.params
        n = min(p.max_images, len(ctx.data))
        x = ctx.data.images[:n].float().div(255)
        y = ctx.data.labels[:n]
        state = ctx.artifact("state.json")  # resumable; named by the record's identity
        result = run_autoattack(ctx.model, x, y, eps=p.eps, seed=ctx.seed, batch_size=ctx.batch_size,
                                device=ctx.device, state_path=state, version=p.version,
                                chunk_size=p.chunk_size, key={"record": ctx.stem})
        return MetricResult(result.robust_accuracy, n, binomial_stderr(result.robust_accuracy, n),
                            {"clean_accuracy": result.clean_accuracy, "per_attack": result.per_attack,
                             "warnings": result.warnings, "chunks": result.chunks,
                             "chunks_resumed": result.chunks_resumed, "state_file": state.name})
