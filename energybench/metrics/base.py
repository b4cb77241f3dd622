"""What a metric is: a name, a protocol (frozen dataclass of parameters) and `compute`.

Metrics run through `energybench.evaluate`, which builds the EvalContext, skips metrics whose
record already exists with the same inputs, and writes one JSON record per metric.
"""

from __future__ import annotations

import abc

import math
from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn as nn

from energybench.data import LabeledImages
from energybench.registry import Registry

METRICS: Registry = Registry("metric")
SUITES: dict[str, list[str]] = {}


@dataclass
class EvalContext:
    """Inputs shared by all metrics of one evaluation.

    data: the test images (first n of the split); model: in eval mode on `device`, float32.
    """

    model: nn.Module
    data: LabeledImages
    device: torch.device
    batch_size: int
    seed: int
    out_dir: object  # pathlib.Path: where records and figures go
    loaded: object = None  # energybench.checkpoint.LoadedModel: provenance, replay buffer, train data

    def batches(self):
        """(x float32 (B, 3, H, W) in [0, 1] on device, y int64 (B,), offset) over the data."""
        for start in range(0, len(self.data), self.batch_size):
            x = self.data.images[start:start + self.batch_size].to(self.device).float().div_(255)
            y = self.data.labels[start:start + self.batch_size].to(self.device)
            yield x, y, start


@dataclass
class MetricResult:
    value: float
    n: int
    stderr: float | None = None
    extra: dict = field(default_factory=dict)


def binomial_stderr(p: float, n: int) -> float:
    """Standard error of an accuracy p measured on n independent images."""
    return math.sqrt(max(p * (1 - p), 0.0) / n) if n > 0 else float("nan")


class Metric(abc.ABC):
    name: ClassVar[str]
    summary: ClassVar[str]
    Params: ClassVar[type]
    unit: ClassVar[str] = "fraction"  # how `value` reads: fraction (accuracy), or a raw quantity

    def __init__(self, params):
        self.params = params

    @abc.abstractmethod
    def compute(self, ctx: EvalContext) -> MetricResult:
        """Run the metric's protocol on ctx.data with ctx.model (eval mode)."""


def register_metric(cls: type[Metric]) -> type[Metric]:
    METRICS.register(cls.name)(cls)
    return cls


def register_suite(name: str, metrics: list[str]) -> None:
    SUITES[name] = list(metrics)
