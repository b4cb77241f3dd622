"""`clean`: top-1 accuracy on unperturbed test images, with per-image outcomes."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from energybench.metrics.base import (
    EvalContext, Metric, MetricResult, binomial_stderr, register_metric,
)
from energybench.energy import logit_margin
from energybench.outcomes import OutcomeLog
from energybench.progress import progress
from energybench.results import write_npz_atomic


@dataclass(frozen=True)
class CleanParams:
    pass


@register_metric
class CleanAccuracy(Metric):
    name = "clean"
    summary = "top-1 accuracy on clean test images"
    Params = CleanParams
    version = 2  # 2: per-image outcomes beside the record

    @torch.no_grad()
    def compute(self, ctx: EvalContext) -> MetricResult:
        log = OutcomeLog()
        for x, y, offset in progress(ctx.batches(), desc="clean", total=-(-len(ctx.data) // ctx.batch_size)):
            logits = ctx.model(x)
            log.add(index=torch.arange(offset, offset + len(y)), clean_correct=logits.argmax(1) == y,
                    margin=logit_margin(logits, y))
        outcomes = log.columns()
        write_npz_atomic(ctx.artifact("outcomes.npz"), **outcomes)
        correct = int(outcomes["clean_correct"].sum())
        acc = correct / len(ctx.data)
        return MetricResult(acc, len(ctx.data), binomial_stderr(acc, len(ctx.data)),
                            {"correct": correct, "outcomes": ctx.artifact("outcomes.npz").name})
