"""`clean`: top-1 accuracy on unperturbed test images."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from energybench.metrics.base import (
    EvalContext, Metric, MetricResult, binomial_stderr, register_metric,
)
from energybench.progress import progress


@dataclass(frozen=True)
class CleanParams:
    pass


@register_metric
class CleanAccuracy(Metric):
    name = "clean"
    summary = "top-1 accuracy on clean test images"
    Params = CleanParams

    @torch.no_grad()
    def compute(self, ctx: EvalContext) -> MetricResult:
        correct = 0
        for x, y, _ in progress(ctx.batches(), desc="clean", total=-(-len(ctx.data) // ctx.batch_size)):
            correct += int((ctx.model(x).argmax(1) == y).sum())
        acc = correct / len(ctx.data)
        return MetricResult(acc, len(ctx.data), binomial_stderr(acc, len(ctx.data)),
                            {"correct": correct})
