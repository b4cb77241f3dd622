"""What a metric is: a name, a protocol (frozen dataclass of parameters) and `compute`.

Metrics run through `energybench.evaluation.runner`, which builds the EvalContext, skips metrics whose
record already exists with the same inputs, and writes one JSON record per metric.

A per-image metric is `shardable`: `shard(ctx)` computes per-image columns for the batches of
the test data that `ctx.batches()` gives this process (under torchrun, batch b goes to rank
b mod world size), and `finish(ctx, shard)` turns the columns of all images, merged in image
order, into the result. Every random draw is seeded from the image or batch index, never from
the rank, so a sharded run gives the one-process record. `prepare(ctx)` runs on every rank first
(e.g. generating the samples a metric scores, sharded too).
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ClassVar

import numpy as np
import torch
import torch.nn as nn

from energybench.core.distributed import World
from energybench.core.registry import Registry
from energybench.core.runtime import derive_seed
from energybench.data import LabeledImages, to_float
from energybench.records.text import protocol_text

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
    loaded: object = None  # energybench.handles.checkpoint.LoadedModel: provenance, replay buffer, train data
    stem: str = "metric"  # file stem of this metric's record: its figures and raw data share it
    train_data: object = None  # LabeledImages the caller named (else None: the model's own, loaded when needed)
    world: World = World()  # the torchrun process group; batches() gives this rank its share
    # images with NaN/inf logits: 'refuse' stops the metric; 'wrong' counts them as wrong
    # (accuracy metrics only; the record says how many). Not part of a record's identity: the two
    # give the same number whenever every logit is finite, and a reused record that counted some
    # as wrong is not reused under 'refuse'.
    nonfinite: str = "refuse"
    # write each attacked image's adversarial example beside the record (<stem>.adversarial.npz) where
    # the metric makes them (Metric.saves_adversarial); an output, not part of a record's identity
    save_adversarial: bool = False

    def artifact(self, suffix: str) -> Path:
        """Where this record's figure or raw data goes: OUT/<stem>.<suffix> (e.g. 'png', 'npz'),
        so records of other protocols in the same folder keep their own files."""
        return Path(self.out_dir) / f"{self.stem}.{suffix}"

    def batch_offsets(self) -> list[int]:
        """The first image index of each batch this process computes: every batch in one
        process; batch b on rank b mod world size under torchrun."""
        starts = range(0, len(self.data), self.batch_size)
        return [s for b, s in enumerate(starts) if b % self.world.size == self.world.rank]

    def batches(self):
        """(x float32 (B, 3, H, W) in [0, 1] on device, y int64 (B,), offset) over this process's
        batches of the data."""
        for start in self.batch_offsets():
            x = to_float(self.data.images[start:start + self.batch_size].to(self.device))
            y = self.data.labels[start:start + self.batch_size].to(self.device)
            yield x, y, start

    @contextlib.contextmanager
    def batch_randomness(self, offset: int):
        """Inside, torch's global generator is seeded from (seed, the batch's first image index),
        in a forked RNG state: a randomized model (test-time purification, random layers) gives the
        same answers in any process and batch split, and the caller's RNG state is untouched."""
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(derive_seed(self.seed, offset, 2))
            yield

    def whole(self) -> "EvalContext":
        """The same context over all images (for what one process computes alone)."""
        return dataclasses.replace(self, world=World())


@dataclass
class Shard:
    """Per-image columns (each (N, ...) with N the images this process computed; `index` (N,)
    their positions in the test data) and small per-process facts (`meta`, one dict a process)."""

    columns: dict[str, np.ndarray]
    meta: list[dict] = field(default_factory=list)

    @staticmethod
    def merge(shards: list["Shard"]) -> "Shard":
        """The shards of all processes as one, in image order (a process that had no batch
        contributes no columns)."""
        full = [s for s in shards if s.columns]
        index = np.concatenate([s.columns["index"] for s in full])
        order = np.argsort(index, kind="stable")
        columns = {k: np.concatenate([s.columns[k] for s in full])[order] for k in full[0].columns}
        return Shard(columns, [m for s in shards for m in s.meta])


@dataclass
class MetricResult:
    value: float
    n: int
    stderr: float | None = None
    extra: dict = field(default_factory=dict)
    diagnostics: dict | None = None  # energybench.attacks.diagnostics checks, by name (attack metrics)


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
    saves_adversarial: ClassVar[bool] = False  # writes <stem>.adversarial.npz when asked (EvalContext)
    unit: ClassVar[str] = "fraction"  # how `value` reads: fraction (accuracy), or a raw quantity
    version: ClassVar[int] = 1
    estimator_params: ClassVar[tuple[str, ...]] = ()
    incidental_params: ClassVar[tuple[str, ...]] = ()

    shardable: ClassVar[bool] = False  # per-image: computed in shards over torchrun's ranks
    # the threat models an attack metric attacks in ('Linf', 'L2'); () for a metric without an
    # attack. Its Params has a `norm` field when it offers more than one.
    norms: ClassVar[tuple[str, ...]] = ()
    # the figure of a record, drawn from its raw data: draw(record, raw) -> matplotlib figure
    # (records.figures.draw_record calls it); None for a metric without a figure
    draw: ClassVar[Callable[[dict, object], object] | None] = None
    # work the cost plan cannot count in gradient passes, named in its announcement (e.g. the
    # adaptive AutoAttack, Inception features); None when gradient_passes covers it all
    uncounted: ClassVar[str | None] = None
    # whether the metric differentiates the model's logits with respect to its input (attacks,
    # scores, samplers); a model whose logits carry no input gradient is refused for these
    needs_input_gradient: ClassVar[bool] = True

    def __init__(self, params):
        self.params = params

    def check_inputs(self) -> None:
        """Refuse (UserError) what can be known wrong before any model runs: files the protocol
        names, for instance. The runner calls it for every metric first."""

    def gradient_passes(self, n: int, num_classes: int) -> float:
        """Image forward+backward passes this metric needs on n test images, for the cost plan a
        long evaluation announces (evaluation.costs): its protocol's own count where the protocol
        declares one (`Params.gradient_passes`), else one forward per image (1/3 of a pass)."""
        count = getattr(self.params, "gradient_passes", None)
        return (count(n, num_classes) if count is not None else 0) or n / 3

    def describe(self, changed: dict) -> str:
        """The record's `summary`: what the value is under the protocol it was measured with. The
        class `summary` describes the default protocol; a record whose protocol differs
        (`changed`, its changed_params) says so, so no record carries another protocol's budget.
        A metric whose summary ends with its budget (`summary_head`) rewrites it instead."""
        if not changed:
            return self.summary
        as_run = protocol_text({"params": self.protocol(), "changed_params": changed})
        head = getattr(self, "summary_head", None)
        return f"{head}: {as_run}" if head else f"{self.summary}; as run: {as_run}"

    def protocol(self) -> dict:
        """Every parameter as it will run, defaults written out (e.g. a PGD step of None becomes
        eps / 4): what records store and what caches and record names are keyed by. A field the
        Params class lists in `IMPLICIT` is left out while it has that value (the value every
        record made before the field existed was measured at)."""
        resolved = self.params.resolved() if hasattr(self.params, "resolved") else self.params
        implicit = getattr(resolved, "IMPLICIT", {})  # e.g. norm 'Linf': see attacks.PGDConfig
        return {k: v for k, v in dataclasses.asdict(resolved).items() if not (k in implicit and v == implicit[k])}

    @classmethod
    def defining_params(cls, protocol: dict) -> dict:
        """The protocol proper: without estimator and incidental parameters."""
        skip = set(cls.estimator_params) | set(cls.incidental_params)
        return {k: v for k, v in protocol.items() if k not in skip}

    def prepare(self, ctx: EvalContext) -> None:
        """What every process does before any computes (e.g. sharded sample generation)."""

    def shard(self, ctx: EvalContext) -> Shard:
        """Per-image columns for this process's batches (shardable metrics)."""
        raise NotImplementedError(f"{self.name} is not computed in shards")

    def finish(self, ctx: EvalContext, shard: Shard) -> MetricResult:
        """The result from every image's columns (shardable metrics)."""
        raise NotImplementedError(f"{self.name} is not computed in shards")

    def compute(self, ctx: EvalContext) -> MetricResult:
        """Run the metric's protocol on ctx.data with ctx.model (eval mode), in one process."""
        if not self.shardable:
            raise NotImplementedError(f"{self.name} must implement compute")
        whole = ctx.whole()
        return self.finish(whole, self.shard(whole))


def register_metric(cls: type[Metric]) -> type[Metric]:
    METRICS.register(cls.name)(cls)
    return cls


def register_suite(name: str, metrics: list[str]) -> None:
    SUITES[name] = list(metrics)
