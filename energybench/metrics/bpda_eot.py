"""`bpda-eot`: robust accuracy of a purified model under BPDA+EOT (energybench.attacks.bpda), the
attack Hill et al. 2021 use against Langevin purification and the SADA-JEM code ships
(bpda_eot_attack.py with bpda_eot_attack_jem.json): L-inf eps 8/255, step 2/255, 50 steps, random
start, gradients averaged over 15 purifications, each apparent break confirmed by the defence's
own prediction (the model's `chains` purifications, 150 by default) before it counts, at every
iterate. On a model without purification it is PGD on cross-entropy.

Purification is a property of the evaluated model (`eval --purify STEPS`), recorded in every
record's identity and model description, so a purified model's records never mix with the plain
model's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from energybench.attacks import diagnostics
from energybench.attacks.bpda import bpda_eot
from energybench.attacks.pgd import NORMS, PGDConfig
from energybench.core.progress import progress
from energybench.metrics.base import EvalContext, Metric, MetricResult, Shard, binomial_stderr, register_metric
from energybench.metrics.robustness import ADVERSARIAL, checks_record, image_seeds, write_adversarial
from energybench.records.outcomes import OutcomeLog, write_outcomes


EXAMPLE_CORRECT = "example_correct"  # (N,) bool: the defence was right on the saved example when attacked


@dataclass(frozen=True)
class BPDAConfig(PGDConfig):
    """PGD's protocol with the SADA-JEM code's BPDA+EOT values; `any_iterate`: a confirmed break
    at any iterate counts (Hill et al.), else only at the final one (PGD's convention)."""

    steps: int = 50
    eot: int = 15
    any_iterate: bool = True

    def gradient_passes(self, n: int, num_classes: int) -> float:
        """Base-classifier passes on n images, purification not counted (it is the model's)."""
        return n * (self.steps + 1) * self.eot


@register_metric
class BPDAEOT(Metric):
    name = "bpda-eot"
    summary = ("robust accuracy under BPDA+EOT (Hill et al. 2021): L-inf eps 8/255, step 2/255, 50 steps, "
               "gradients at 15 purifications, breaks confirmed by the defence's prediction at every iterate")
    summary_head = "robust accuracy under BPDA+EOT"
    Params = BPDAConfig
    norms = NORMS
    shardable = True
    saves_adversarial = True  # each image's first confirmed break, else its final iterate
    uncounted = "the purification steps of every gradient and confirmation"
    # more steps and EOT copies tighten the same upper bound on robust accuracy: a table cell takes a
    # record at any value of them and prints them beside the number (a reproduction preset scales them)
    estimator_params = ("steps", "eot")

    def shard(self, ctx: EvalContext) -> Shard:
        cfg, log, meta = self.params, OutcomeLog(("candidates", ADVERSARIAL, EXAMPLE_CORRECT)), []
        for x, y, offset in progress(ctx.batches(), desc=self.name, total=len(ctx.batch_offsets())):
            index = torch.arange(offset, offset + len(y))
            with ctx.batch_randomness(offset):  # the purification noise, per batch
                if offset == 0:
                    with torch.no_grad():
                        first = ctx.model(x)
                    meta.append({"randomized_forward": diagnostics.randomized_forward(ctx.model, x, first).as_record()})
                out = bpda_eot(ctx.model, x, y, cfg, image_seeds(ctx.seed, index), cfg.any_iterate)
            log.add(index=index, clean_correct=out.clean_correct, adv_correct=out.adv_correct, robust=out.robust,
                    candidates=out.candidates)
            if ctx.save_adversarial:
                log.add(**{ADVERSARIAL: out.examples, EXAMPLE_CORRECT: out.example_correct})
        return Shard(log.columns(), meta)

    def finish(self, ctx: EvalContext, shard: Shard) -> MetricResult:
        c = dict(shard.columns)
        n = len(c["index"])
        robust, clean = int(c["robust"].sum()), int(c["clean_correct"].sum())
        randomized = next((diagnostics.from_record("randomized_forward", m["randomized_forward"])
                           for m in shard.meta if "randomized_forward" in m), None)
        checks = [] if randomized is None else [diagnostics.expected_randomness(randomized)]
        outcomes = {k: v for k, v in c.items() if k not in ("candidates", ADVERSARIAL, EXAMPLE_CORRECT)}
        write_outcomes(ctx.artifact("outcomes.npz"), outcomes)
        acc = robust / n
        extra = {"clean_accuracy": clean / n, "outcomes": ctx.artifact("outcomes.npz").name,
                 "candidate_breaks": int((c["candidates"] > 0).sum()),
                 "unconfirmed_candidates": int(((c["candidates"] > 0) & c["robust"]).sum())}
        if ADVERSARIAL in c:  # adv_correct of the saved file: the defence on the saved example
            write_adversarial(ctx.artifact("adversarial.npz"), c[ADVERSARIAL],
                              {"index": c["index"], "adv_correct": c[EXAMPLE_CORRECT].astype(bool)})
            extra["adversarial"] = ctx.artifact("adversarial.npz").name
        return MetricResult(acc, n, binomial_stderr(acc, n), extra, checks_record(checks))
