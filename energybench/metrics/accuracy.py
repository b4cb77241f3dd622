"""`clean`: top-1 accuracy on unperturbed test images, with per-image outcomes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from energybench.core.progress import progress
from energybench.energy.energies import logit_margin, refuse_nonfinite
from energybench.metrics.base import (
    EvalContext, Metric, MetricResult, Shard, binomial_stderr, register_metric,
)
from energybench.records.outcomes import OutcomeLog, write_outcomes


@dataclass(frozen=True)
class CleanParams:
    pass


@register_metric
class CleanAccuracy(Metric):
    name = "clean"
    needs_input_gradient = False
    summary = "top-1 accuracy on clean test images"
    Params = CleanParams
    version = 2  # 2: per-image outcomes beside the record
    shardable = True

    @torch.no_grad()
    def shard(self, ctx: EvalContext) -> Shard:
        log = OutcomeLog(("nonfinite",))
        for x, y, offset in progress(ctx.batches(), desc="clean", total=len(ctx.batch_offsets())):
            with ctx.batch_randomness(offset):  # a randomized (e.g. purified) model, reproducibly
                logits = ctx.model(x)
            log.add(index=torch.arange(offset, offset + len(y)), clean_correct=logits.argmax(1) == y,
                    margin=logit_margin(logits, y), nonfinite=~torch.isfinite(logits).all(1))
        return Shard(log.columns())

    def finish(self, ctx: EvalContext, shard: Shard) -> MetricResult:
        outcomes = dict(shard.columns)
        counted_wrong = refuse_nonfinite(self.name, outcomes["nonfinite"], ctx.nonfinite)
        outcomes["clean_correct"] = outcomes["clean_correct"] & ~outcomes["nonfinite"]
        write_outcomes(ctx.artifact("outcomes.npz"), outcomes)
        correct = int(np.sum(outcomes["clean_correct"]))
        acc = correct / len(ctx.data)
        extra = {"correct": correct, "outcomes": ctx.artifact("outcomes.npz").name}
        if counted_wrong:
            extra["nonfinite_counted_wrong"] = counted_wrong
        return MetricResult(acc, len(ctx.data), binomial_stderr(acc, len(ctx.data)), extra)
