"""`memorization` (JEAT Fig. 7): for each generated image, its 10 nearest training images by SSIM
(11x11 Gaussian window, sigma 1.5, data range 1) over the whole training split the model saw.
Records the distribution of the best SSIM and the share above a threshold; the raw data (indices,
values, and the images of the figure's rows: generated | its k neighbours) sit beside the record."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from energybench.core.atomic import write_npz_atomic
from energybench.energy.generation import GenerationConfig
from energybench.metrics.base import EvalContext, Metric, MetricResult, Shard, register_metric
from energybench.metrics.generative import samples_for, train_uint8
from energybench.metrics.memorization_figure import memorization_figure
from energybench.metrics.ssim import nearest_by_ssim


@dataclass(frozen=True)
class MemorizationParams(GenerationConfig):
    LIMITS = {**GenerationConfig.LIMITS, "k": "[1, 1000]", "threshold": "[-1, 1]", "figure_rows": "[1, 1000]"}

    k: int = 10
    threshold: float = 0.9  # share of samples whose best SSIM exceeds this
    figure_rows: int = 10


@register_metric
class Memorization(Metric):
    name = "memorization"
    uncounted = "the SSIM search"
    draw = staticmethod(memorization_figure)
    summary = "mean best SSIM of SGLD samples to the training split (JEAT Fig. 7); lower = less copying"
    Params = MemorizationParams
    unit = "ssim"
    incidental_params = ("batch_size", "figure_rows")

    version = 2  # 2: samples from per-batch seeds (shardable generation and queries)
    shardable = True  # the generated samples (queries) split over the ranks

    def prepare(self, ctx: EvalContext) -> None:
        samples_for(ctx, self.params)

    def shard(self, ctx: EvalContext) -> Shard:
        samples = samples_for(ctx, self.params)
        train = train_uint8(ctx)
        starts = range(0, len(samples.labels), ctx.batch_size)
        mine = torch.cat([torch.arange(s, min(s + ctx.batch_size, len(samples.labels)))
                          for b, s in enumerate(starts) if b % ctx.world.size == ctx.world.rank] or
                         [torch.zeros(0, dtype=torch.long)])
        if not len(mine):
            return Shard({})
        values, indices = nearest_by_ssim(samples.images[mine], train.images, k=self.params.k, device=ctx.device)
        return Shard({"index": mine.numpy(), "ssim": values.numpy(), "train_index": indices.numpy()})

    def finish(self, ctx: EvalContext, shard: Shard) -> MetricResult:
        samples = samples_for(ctx, self.params)
        train = train_uint8(ctx)
        values = torch.from_numpy(shard.columns["ssim"])
        indices = torch.from_numpy(shard.columns["train_index"])
        best = values[:, 0].double()
        rows = min(self.params.figure_rows, len(samples.labels))
        pick = torch.linspace(0, len(samples.labels) - 1, rows).long()  # spread over classes
        write_npz_atomic(ctx.artifact("npz"), ssim=values.numpy(), train_index=indices.numpy(),
                         sample_labels=samples.labels.numpy(), classes=np.array(ctx.data.classes),
                         figure_samples=samples.uint8()[pick].numpy(), figure_labels=samples.labels[pick].numpy(),
                         figure_neighbours=train.images[indices[pick]].numpy(), figure_ssim=values[pick].numpy())
        n = len(best)
        return MetricResult(float(best.mean()), n, float(best.std() / n**0.5) if n > 1 else None, {
            "best_ssim_median": float(best.median()), "best_ssim_max": float(best.max()),
            "best_ssim_quantiles": {q: float(best.quantile(q)) for q in (0.1, 0.5, 0.9)},
            "share_above_threshold": float((best > self.params.threshold).double().mean()),
            "train_images": len(train), "figure": ctx.artifact("png").name, "raw": ctx.artifact("npz").name,
        })
