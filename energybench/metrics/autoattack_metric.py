"""AutoAttack (pyautoattack): standard, rand or L2, on a chunked and resumable run, with per-image
outcomes and the attack-failure checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch

from energybench.attacks import diagnostics
from energybench.attacks.autoattack import chunk_index, run_autoattack
from energybench.attacks.pgd import NORMS
from energybench.core.validation import Checked, RangeError
from energybench.data import to_float
from energybench.energy.energies import refuse_nonfinite
from energybench.metrics.base import (
    EvalContext, Metric, MetricResult, Shard, binomial_stderr, register_metric,
)
from energybench.metrics.robustness import ADVERSARIAL, checks_record, settle_budget, write_adversarial
from energybench.records.outcomes import OutcomeLog, write_outcomes


CUSTOM_ATTACKS = ("apgd-ce", "apgd-t", "apgd-dlr", "fab", "fab-t", "square")  # pyautoattack's names


@dataclass(frozen=True)
class AutoAttackParams(Checked):
    LIMITS = {"max_images": "[1, 10000000]", "chunk_size": "[1, 100000]"}
    CHOICES = {"version": ("standard", "plus", "rand", "custom"), "norm": NORMS}
    IMPLICIT: ClassVar[dict] = {"norm": "Linf", "attacks": None}  # left out of records at these values

    eps: float | None = None  # None: the norm's standard budget (8/255 L-inf, 0.5 L2)
    # APGD-CE, APGD-T, FAB-T, Square; 'rand' (APGD with EOT) for randomized models; 'custom': `attacks`
    version: str = "standard"
    max_images: int = 1000  # the first images of --n (AutoAttack is slow); full test set at paper scale
    chunk_size: int = 250  # images per resumable unit; each chunk's result is saved when it ends
    norm: str = "Linf"  # the threat model: "Linf" or "L2"
    attacks: tuple[str, ...] | None = None  # with version 'custom': the attacks to run, in order

    def gradient_passes(self, n: int, num_classes: int) -> float:
        """What AutoAttack surely spends on its min(n, max_images) images: its first attack's 100
        iterations on every image (APGD-CE; for version rand, 20 EOT samples of it). The later
        attacks run only on images still robust (Metric.uncounted)."""
        return min(n, self.max_images) * (100 + 2 / 3) * (20 if self.version == "rand" else 1)

    def __post_init__(self):
        settle_budget(self)
        super().__post_init__()
        if self.version == "custom":
            if not self.attacks:
                raise RangeError("attacks", f"must name the attacks of version custom, e.g. apgd-ce,square "
                                            f"(of {', '.join(CUSTOM_ATTACKS)})")
            unknown = [a for a in self.attacks if a not in CUSTOM_ATTACKS]
            if unknown or len(set(self.attacks)) != len(self.attacks):
                raise RangeError("attacks", f"must be distinct names among {', '.join(CUSTOM_ATTACKS)}, got "
                                            f"{', '.join(self.attacks)}")
        elif self.attacks is not None:
            raise RangeError("attacks", f"chooses the attacks of version custom only; version {self.version} "
                                        f"runs its own")


@register_metric
class AutoAttackMetric(Metric):
    name = "autoattack"
    # adaptive: the attacks after the first run only on the images still robust (up to ~40x the first)
    uncounted = "AutoAttack's attacks after its first, which run only on images still robust"
    summary = ("robust accuracy under standard AutoAttack (pyautoattack), first 1,000 images: L-inf 8/255 "
               "(norm L2: 0.5)")
    Params = AutoAttackParams
    norms = NORMS
    version = 3  # 3: per-image outcomes and diagnostics; 2: chunked runs (1: one run over all images)
    incidental_params = ("max_images", "chunk_size")  # max_images shows as the record's n
    shardable = True  # by chunk: chunk c on rank c mod world size
    saves_adversarial = True  # the images AutoAttack returned (kept per chunk beside its state)

    def state_file(self, ctx: EvalContext) -> Path:
        """This process's resumable state: <stem>.state.json, or one file per rank under torchrun."""
        world = ctx.world
        return ctx.artifact("state.json" if world.size == 1 else f"state-{world.rank}-of-{world.size}.json")

    def shard(self, ctx: EvalContext) -> Shard:
        p = self.params
        n = min(p.max_images, len(ctx.data))
        chunks = range(-(-n // p.chunk_size))
        mine = [c for c in chunks if c % ctx.world.size == ctx.world.rank]
        x = to_float(ctx.data.images[:n])
        y = ctx.data.labels[:n]
        result = run_autoattack(ctx.model, x, y, eps=p.eps, seed=ctx.seed, batch_size=ctx.batch_size,
                                device=ctx.device, state_path=self.state_file(ctx), version=p.version,
                                custom_attacks=p.attacks,
                                chunk_size=p.chunk_size, key={"record": ctx.stem}, chunk_ids=mine,
                                nonfinite=ctx.nonfinite, norm=p.norm, keep_adversarial=ctx.save_adversarial)
        log = OutcomeLog(("grad_zero", "grad_nonfinite", "nonfinite", ADVERSARIAL))
        if mine:
            log.add(index=chunk_index(p.chunk_size, n, mine), clean_correct=result.clean_flags,
                    adv_correct=result.adv_flags, robust=result.robust_flags, loss=result.loss,
                    margin=result.margin, grad_zero=result.grad_zero, grad_nonfinite=result.grad_nonfinite,
                    nonfinite=result.nonfinite)
            if result.adversarial is not None:
                log.add(**{ADVERSARIAL: result.adversarial})
        meta = {"robust_after": result.robust_after, "warnings": result.warnings, "chunks": result.chunks,
                "chunks_resumed": result.chunks_resumed, "probability_rows": result.probability_rows,
                "state_file": self.state_file(ctx).name}
        if result.randomized is not None:
            meta["randomized_forward"] = result.randomized.as_record()
        if result.gradient_direction is not None:
            meta["gradient_direction"] = result.gradient_direction.as_record()
        return Shard(log.columns(), [meta])

    @staticmethod
    def _gradient_direction(randomized, meta) -> diagnostics.Check:
        if randomized.flag:
            return diagnostics.not_assessed("gradient_direction", "the forward is randomized: one forward's "
                                            "loss along a direction is noise")
        stored = next((m["gradient_direction"] for m in meta if "gradient_direction" in m), None)
        if stored is None:
            return diagnostics.not_assessed("gradient_direction", "the first chunk was attacked before this "
                                            "check existed (its state was resumed)")
        return diagnostics.from_record("gradient_direction", stored)

    def finish(self, ctx: EvalContext, shard: Shard) -> MetricResult:
        c, meta = dict(shard.columns), shard.meta
        adversarial = c.pop(ADVERSARIAL, None)
        counted_wrong = refuse_nonfinite(self.name, c["nonfinite"], ctx.nonfinite)
        for column in ("clean_correct", "adv_correct", "robust"):
            c[column] = c[column] & ~c["nonfinite"]
        n = len(c["index"])
        robust, clean = int(c["robust"].sum()), int(c["clean_correct"].sum())
        after: dict[str, int] = {}
        for m in meta:
            for attack, count in m["robust_after"].items():
                after[attack] = after.get(attack, 0) + count
        write_outcomes(ctx.artifact("outcomes.npz"), c)
        randomized = next(diagnostics.from_record("randomized_forward", m["randomized_forward"])
                          for m in meta if "randomized_forward" in m)
        checks = [randomized,
                  diagnostics.probability_output(rows=sum(m["probability_rows"] for m in meta), total=n),
                  diagnostics.unavailable_gradients(torch.from_numpy(c["grad_zero"]),
                                                    torch.from_numpy(c["grad_nonfinite"]),
                                                    torch.from_numpy(c["robust"])),
                  diagnostics.not_assessed("incomplete_optimisation", "AutoAttack reports no trajectory "
                                           "(its APGD adapts its step and restarts from the best point)"),
                  self._gradient_direction(randomized, meta)]
        states = [m["state_file"] for m in meta]
        saved = {}
        if adversarial is not None:
            write_adversarial(ctx.artifact("adversarial.npz"), adversarial, c)
            saved["adversarial"] = ctx.artifact("adversarial.npz").name
        acc = robust / n
        return MetricResult(acc, n, binomial_stderr(acc, n),
                            {"clean_accuracy": clean / n, "per_attack": {a: k / n for a, k in after.items()},
                             "warnings": list(dict.fromkeys(w for m in meta for w in m["warnings"])),
                             "chunks": sum(m["chunks"] for m in meta),
                             "chunks_resumed": sum(m["chunks_resumed"] for m in meta),
                             "state_file": states[0] if len(states) == 1 else states,
                             "outcomes": ctx.artifact("outcomes.npz").name, **saved,
                             **({"nonfinite_counted_wrong": counted_wrong} if counted_wrong else {})},
                            checks_record(checks))
