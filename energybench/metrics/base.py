"""What a metric is: a name, a protocol (frozen dataclass of parameters) and `compute`.

Metrics run through `energybench.evaluation`, which builds the EvalContext, skips metrics whose
record already exists with the same inputs, and writes one JSON record per metric.
"""

from __future__ import annotations

import abc
import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
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
    stem: str = "metric"  # file stem of this metric's record: its figures and raw data share it
    train_data: str | None = None  # training data spec when the model does not name its own

    def artifact(self, suffix: str) -> Path:
        """Where this record's figure or raw data goes: OUT/<stem>.<suffix> (e.g. 'png', 'npz'),
        so records of other protocols in the same folder keep their own files."""
        return Path(self.out_dir) / f"{self.stem}.{suffix}"

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
    diagnostics: dict | None = None  # energybench.diagnostics checks, by name (attack metrics)


def binomial_stderr(p: float, n: int) -> float:
    """Standard error of an accuracy p measured on n independent images."""
    return math.sqrt(max(p * (1 - p), 0.0) / n) if n > 0 else float("nan")


class Metric(abc.ABC):
    """A metric: `Params` is its protocol (a frozen dataclass; every field is recorded).

    Fields named in `estimator_params` set how precisely the same quantity is estimated (e.g.
    Hutchinson probes): tables accept records with any value and print it beside the number.
    Fields in `incidental_params` change neither the quantity nor its estimator's precision (batch
    sizes, seeds of generated sets, file locations). Every other field is the protocol proper: a
    table cell accepts a record only if each of them equals the cell's protocol. Bump `version`
    when a change to `compute` changes its numbers: records of another version are recomputed
    and never fill a table cell."""

    name: ClassVar[str]
    summary: ClassVar[str]
    Params: ClassVar[type]
    unit: ClassVar[str] = "fraction"  # how `value` reads: fraction (accuracy), or a raw quantity
    version: ClassVar[int] = 1
    estimator_params: ClassVar[tuple[str, ...]] = ()
    incidental_params: ClassVar[tuple[str, ...]] = ()

    def __init__(self, params):
        self.params = params

    def protocol(self) -> dict:
        """Every parameter as it will run, defaults written out (e.g. a PGD step of None becomes
        eps / 4): what records store and what caches and record names are keyed by."""
        resolved = self.params.resolved() if hasattr(self.params, "resolved") else self.params
        return dataclasses.asdict(resolved)

    @classmethod
    def defining_params(cls, protocol: dict) -> dict:
        """The protocol proper: without estimator and incidental parameters."""
        skip = set(cls.estimator_params) | set(cls.incidental_params)
        return {k: v for k, v in protocol.items() if k not in skip}

    @abc.abstractmethod
    def compute(self, ctx: EvalContext) -> MetricResult:
        """Run the metric's protocol on ctx.data with ctx.model (eval mode)."""


def register_metric(cls: type[Metric]) -> type[Metric]:
    METRICS.register(cls.name)(cls)
    return cls


def register_suite(name: str, metrics: list[str]) -> None:
    SUITES[name] = list(metrics)
