"""Robust accuracy under the PGD family, and whether the attack behind it worked.

Metrics here (autoattack, robust-curve and attack-sanity have files of their own and share the
PGD loop below):
    pgd20                 PGD-20 on cross-entropy (eq. 14): L-inf eps 8/255, step 2/255, random start
                          (norm L2: eps 0.5, step 0.125, RobustBench's L2 budget)
    pgd20-energy          the same ascending E(x, y), the energy attack (eq. 18; JEAT Table 1)
    pgd20-jem-public      JEM's public evaluation: Gaussian noise (sigma 0.03 on [-1, 1], 0.015 in
                          pixels) added once to every test image, then the standard PGD-20
    pgd20-ebjdat-public   EB-JDAT's public evaluation (eval_jempp.py): the same noise, then PGD-20
                          written for [0, 1] but run on [-1, 1] inputs (eps 8/255 and step 1/255
                          there: 4/255 and 0.5/255 in pixels); an image counts as robust when its
                          adversarial example is classified right, whatever its clean prediction
    autoattack            standard AutoAttack (pyautoattack), L-inf or L2, chunked and resumable
    robust-curve          PGD-20 accuracy against eps (0 to 16/255), with its figure
    attack-sanity         the `diagnostics` suite: unbounded attack, budget monotonicity, more
                          steps and restarts, and a gradient-free attack, on a subset

Every PGD and AutoAttack record carries per-image outcomes (`energybench.records.outcomes`) and the
always-on indicators of attack failure (`energybench.attacks.diagnostics`). Each image's random start is
drawn from a seed derived from the evaluation seed and the image's index, so it does not depend on
the batch it is attacked in. Set `eot` > 1 for EOT-PGD (the attack for randomized models).
The attack metrics other than the public protocols take `norm` ('Linf' or 'L2', see
energybench.attacks.pgd); an L-inf protocol's record leaves `norm` out (`PGDConfig.IMPLICIT`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from energybench.attacks import diagnostics
from energybench.attacks.pgd import (
    BUDGET_RANGE, DEFAULT_EPS, NORMS, AttackTrace, PGDConfig, per_example_loss, pgd,
)
from energybench.core.atomic import write_npz_atomic
from energybench.core.progress import progress
from energybench.core.runtime import derive_seed, make_generator
from energybench.core.validation import RangeError, check_value
from energybench.energy.energies import logit_margin, refuse_nonfinite
from energybench.energy.purification import purification_of
from energybench.metrics.base import (
    EvalContext, Metric, MetricResult, Shard, binomial_stderr, register_metric,
)
from energybench.records.outcomes import OutcomeLog, write_outcomes

PROBE_STREAM = 2  # the gradient-direction probe's random steps: stream 2 of image 0's seed
JEM_TEST_NOISE = 0.03 / 2  # sigma 0.03 on [-1, 1] inputs, in [0, 1] pixel units


@dataclass
class PGDRun:
    """One PGD evaluation over ctx.data: counts, per-image outcomes, and the diagnostics."""

    n: int
    clean: int
    robust: int
    outcomes: dict
    checks: list
    counted_wrong: int = 0  # images with NaN/inf logits counted as wrong (policy 'wrong')
    adversarial: object = None  # np.ndarray (N, C, H, W) float32 when the examples were kept


def image_seeds(seed: int, index: torch.Tensor) -> torch.Tensor:
    """One seed per image, from the evaluation seed and the image's index in the test split."""
    return torch.tensor([derive_seed(seed, int(i)) for i in index], dtype=torch.int64)


def test_noise(x: torch.Tensor, index: torch.Tensor, sigma: float, seed: int) -> torch.Tensor:
    """x + N(0, sigma^2) noise fixed per image (drawn from the image's own seed), not clamped:
    the public codes add it in their data transform, once per test image."""
    noise = torch.stack([torch.randn(x.shape[1:], generator=make_generator(derive_seed(seed, int(i), 1)))
                         for i in index]) if len(index) else torch.zeros_like(x)
    return x + sigma * noise.to(x.device)


SHARD_COLUMNS = ("margin_path", "grad_zero", "grad_nonfinite", "probability_like", "nonfinite")
ADVERSARIAL = "adversarial"  # (N, C, H, W) float32 in [0, 1], collected when EvalContext.save_adversarial


def pgd_shard(ctx: EvalContext, cfg: PGDConfig, desc: str, noise_sigma: float = 0.0,
              robust_needs_clean: bool = True) -> Shard:
    """PGD over this process's batches: per-image outcomes and what the diagnostics need (the
    attack's margin path (N, steps), start-gradient flags, probability-like rows); the process
    that has the first batch also compares two forwards of it and, for a deterministic model,
    probes whether its gradient helps the attack (meta).

    A randomized model draws its randomness from torch's global generator, which is seeded per
    batch from (seed, first image index) inside a forked RNG state: records are reproducible, the
    same in any process, and the caller's RNG state is untouched."""
    model, log = ctx.model, OutcomeLog(SHARD_COLUMNS + (ADVERSARIAL,))
    meta = []
    for x, y, offset in progress(ctx.batches(), desc=desc, total=len(ctx.batch_offsets())):
        index = torch.arange(offset, offset + len(y))
        if noise_sigma > 0:
            x = test_noise(x, index, noise_sigma, ctx.seed)
        with ctx.batch_randomness(offset):
            with torch.no_grad():
                logits = model(x)
            if offset == 0:
                randomized = diagnostics.randomized_forward(model, x, logits)
                if purification_of(model) is not None:
                    randomized = diagnostics.purified_randomness(randomized)
                meta.append({"randomized_forward": randomized.as_record()})
            trace = AttackTrace()
            x_adv = pgd(model, x, y, cfg, trace=trace, image_seeds=image_seeds(ctx.seed, index))
            with torch.no_grad():
                adv_logits = model(x_adv)
            if offset == 0 and not randomized.flag:  # after the attack: its draws stay as they were
                meta[0]["gradient_direction"] = diagnostics.gradient_direction(
                    model, x, y, cfg.step, cfg.norm, cfg.objective, derive_seed(ctx.seed, 0, PROBE_STREAM)).as_record()
        right_clean = logits.argmax(1) == y
        right_adv = adv_logits.argmax(1) == y
        log.add(index=index, clean_correct=right_clean, adv_correct=right_adv,
                robust=right_clean & right_adv if robust_needs_clean else right_adv,
                loss=per_example_loss(adv_logits, y, cfg.objective), margin=logit_margin(adv_logits, y),
                margin_path=trace.margin_trajectory().T, grad_zero=trace.grad_zero,
                grad_nonfinite=trace.grad_nonfinite, probability_like=diagnostics.probability_like(logits),
                nonfinite=~(torch.isfinite(logits).all(1) & torch.isfinite(adv_logits).all(1)))
        if ctx.save_adversarial:
            log.add(**{ADVERSARIAL: x_adv.float()})
    return Shard(log.columns(), meta)


def pgd_result(shard: Shard, cfg: PGDConfig, name: str = "PGD", nonfinite: str | None = None) -> PGDRun:
    """Counts and the always-on diagnostics from every image's PGD columns; `nonfinite` is the
    policy for images with NaN/inf logits (EvalContext.nonfinite): 'wrong' counts them wrong."""
    c = dict(shard.columns)
    counted_wrong = refuse_nonfinite(name, c["nonfinite"], nonfinite)
    answered = ~c["nonfinite"]
    for column in ("clean_correct", "adv_correct", "robust"):
        c[column] = c[column] & answered
    survived = torch.from_numpy(c["robust"])
    randomized = next(diagnostics.from_record("randomized_forward", m["randomized_forward"])
                      for m in shard.meta if "randomized_forward" in m)
    checks = [randomized,
              diagnostics.probability_output(rows=int(c["probability_like"].sum()), total=len(survived)),
              diagnostics.unavailable_gradients(torch.from_numpy(c["grad_zero"]),
                                                torch.from_numpy(c["grad_nonfinite"]), survived)]
    if randomized.flag and cfg.eot == 1:
        checks.append(diagnostics.not_assessed(
            "incomplete_optimisation", "the forward is randomized: a single-sample trajectory is noise"))
    else:
        checks.append(diagnostics.incomplete_optimisation(torch.from_numpy(c["margin_path"]).T,
                                                          torch.from_numpy(c["margin"]), survived))
    if randomized.flag:
        checks.append(diagnostics.not_assessed(
            "gradient_direction", "the forward is randomized: one forward's loss along a direction is noise"))
    else:
        checks.append(next(diagnostics.from_record("gradient_direction", m["gradient_direction"])
                           for m in shard.meta if "gradient_direction" in m))
    outcomes = {k: v for k, v in c.items() if k not in SHARD_COLUMNS and k != ADVERSARIAL}
    return PGDRun(len(survived), int(c["clean_correct"].sum()), int(c["robust"].sum()), outcomes, checks,
                  counted_wrong, c.get(ADVERSARIAL))


def run_pgd(ctx: EvalContext, cfg: PGDConfig, desc: str, noise_sigma: float = 0.0,
            robust_needs_clean: bool = True) -> PGDRun:
    """PGD over all of ctx.data in this process, with per-image outcomes and the diagnostics
    (curves and sanity checks: NaN/inf logits always stop them)."""
    return pgd_result(pgd_shard(ctx.whole(), cfg, desc, noise_sigma, robust_needs_clean), cfg, desc, None)


def checks_record(checks) -> dict:
    return {c.name: c.as_record() for c in checks}


def write_adversarial(path, images, outcomes: dict) -> None:
    """<stem>.adversarial.npz: `images` (N, C, H, W) float32 in [0, 1], the adversarial example of
    each attacked image (exactly as attacked, not rounded to 8 bits), with `index` (N,), the
    image's index in the test split, and `adv_correct` (N,), whether the model was right on it."""
    write_npz_atomic(path, images=np.asarray(images, dtype=np.float32), index=outcomes["index"],
                     adv_correct=outcomes["adv_correct"])


class PGDRobustAccuracy(Metric):
    """Accuracy on PGD adversarial examples; the image counts as robust only if the model is
    right on the clean image too (its adversarial example starts inside the eps-ball)."""

    saves_adversarial = True

    Params = PGDConfig  # the protocol: eps 8/255, step 2/255, 20 steps, random start, CE
    norms = NORMS
    version = 2  # 2: per-image random starts, outcomes and diagnostics (1: starts per batch)
    shardable = True

    def attack(self) -> PGDConfig:
        return PGDConfig(**{f.name: getattr(self.params, f.name) for f in dataclasses.fields(PGDConfig)})

    def shard(self, ctx: EvalContext) -> Shard:
        return pgd_shard(ctx, self.attack(), self.name, getattr(self.params, "test_noise", 0.0),
                         getattr(self.params, "robust_needs_clean", True))

    def finish(self, ctx: EvalContext, shard: Shard) -> MetricResult:
        run = pgd_result(shard, self.attack(), self.name, ctx.nonfinite)
        write_outcomes(ctx.artifact("outcomes.npz"), run.outcomes)
        acc = run.robust / run.n
        extra = {"clean_accuracy": run.clean / run.n, "outcomes": ctx.artifact("outcomes.npz").name}
        if run.adversarial is not None:
            write_adversarial(ctx.artifact("adversarial.npz"), run.adversarial, run.outcomes)
            extra["adversarial"] = ctx.artifact("adversarial.npz").name
        if run.counted_wrong:
            extra["nonfinite_counted_wrong"] = run.counted_wrong
        return MetricResult(acc, run.n, binomial_stderr(acc, run.n), extra, checks_record(run.checks))


@register_metric
class PGD20(PGDRobustAccuracy):
    name = "pgd20"
    summary = ("robust accuracy, PGD-20 on cross-entropy, random start: L-inf eps 8/255, step 2/255 "
               "(norm L2: eps 0.5, step 0.125)")
    summary_head = "robust accuracy, PGD-20 on cross-entropy, random start"


@dataclass(frozen=True)
class EnergyPGDConfig(PGDConfig):
    objective: str = "energy"


@register_metric
class PGD20Energy(PGDRobustAccuracy):
    name = "pgd20-energy"
    summary = ("robust accuracy, PGD-20 ascending E(x, y) (eq. 18): L-inf eps 8/255, step 2/255 "
               "(norm L2: eps 0.5, step 0.125)")
    summary_head = "robust accuracy, PGD-20 ascending E(x, y) (eq. 18)"
    Params = EnergyPGDConfig


@dataclass(frozen=True)
class PublicPGDConfig(PGDConfig):
    """A public codebase's evaluation: `test_noise` (pixel units) added once to each test image
    before the attack, and whether an image must also be right on its clean version to count."""

    LIMITS = {**PGDConfig.LIMITS, "test_noise": "[0, 1]"}

    test_noise: float = JEM_TEST_NOISE
    robust_needs_clean: bool = True

    def __post_init__(self):
        super().__post_init__()
        if self.norm != "Linf":
            raise RangeError("norm", f"must be Linf: this is a public codebase's L-inf evaluation, got {self.norm!r}")


@register_metric
class PGD20JEMPublic(PGDRobustAccuracy):
    name = "pgd20-jem-public"
    summary = ("PGD-20 as JEM's public evaluation: test-time noise sigma 0.03 on [-1, 1] "
               "(0.015 in pixels) added to every image, then eps 8/255, step 2/255")
    Params = PublicPGDConfig
    norms = ("Linf",)


@dataclass(frozen=True)
class EBJDATPublicConfig(PublicPGDConfig):
    eps: float = 4 / 255  # "8/255" on [-1, 1] inputs
    step_size: float | None = 0.5 / 255  # "1/255" on [-1, 1] inputs
    robust_needs_clean: bool = False  # eval_jempp.py counts right adversarial predictions only


@register_metric
class PGD20EBJDATPublic(PGDRobustAccuracy):
    name = "pgd20-ebjdat-public"
    summary = ("PGD-20 as EB-JDAT's public evaluation (eval_jempp.py): test-time noise 0.015, "
               "eps 4/255, step 0.5/255 in pixels (its 8/255 and 1/255 on [-1, 1]), adversarial hits only")
    Params = EBJDATPublicConfig
    norms = ("Linf",)


def settle_budget(params) -> None:
    """For a frozen Params with `eps` and `norm`: eps None becomes the norm's standard budget, and
    eps must lie in the norm's range (a RangeError naming eps). A wrong norm is left to Checked."""
    if params.norm in NORMS:
        if params.eps is None:
            object.__setattr__(params, "eps", DEFAULT_EPS[params.norm])
        check_value("eps", params.eps, BUDGET_RANGE[params.norm])
