"""Robust accuracy, and whether the attack behind it worked.

Metrics:
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
from pathlib import Path
from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np
import torch

from energybench.attacks import diagnostics
from energybench.attacks.pgd import (
    BUDGET_RANGE, DEFAULT_EPS, NORMS, AttackTrace, PGDConfig, per_example_loss, pgd,
)
from energybench.attacks.autoattack import chunk_index, run_autoattack, run_square
from energybench.energy.energies import logit_margin
from energybench.metrics.robust_curve_figure import robust_curve
from energybench.metrics.base import (
    EvalContext, Metric, MetricResult, Shard, binomial_stderr, refuse_nonfinite, register_metric,
)
from energybench.records.outcomes import OutcomeLog, write_outcomes
from energybench.core.progress import progress
from energybench.records.text import budget_text
from energybench.core.atomic import write_npz_atomic
from energybench.core.runtime import derive_seed, make_generator
from energybench.core.validation import Checked, RangeError, check_value

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


def pgd_shard(ctx: EvalContext, cfg: PGDConfig, desc: str, noise_sigma: float = 0.0,
              robust_needs_clean: bool = True) -> Shard:
    """PGD over this process's batches: per-image outcomes and what the diagnostics need (the
    attack's margin path (N, steps), start-gradient flags, probability-like rows); the process
    that has the first batch also compares two forwards of it (meta).

    A randomized model draws its randomness from torch's global generator, which is seeded per
    batch from (seed, first image index) inside a forked RNG state: records are reproducible, the
    same in any process, and the caller's RNG state is untouched."""
    model, log = ctx.model, OutcomeLog(SHARD_COLUMNS)
    meta = []
    devices = [ctx.device] if ctx.device.type == "cuda" else []
    for x, y, offset in progress(ctx.batches(), desc=desc, total=len(ctx.batch_offsets())):
        index = torch.arange(offset, offset + len(y))
        if noise_sigma > 0:
            x = test_noise(x, index, noise_sigma, ctx.seed)
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(derive_seed(ctx.seed, offset, 2))
            with torch.no_grad():
                logits = model(x)
            if offset == 0:
                meta.append({"randomized_forward": diagnostics.randomized_forward(model, x, logits).as_record()})
            trace = AttackTrace()
            x_adv = pgd(model, x, y, cfg, trace=trace, image_seeds=image_seeds(ctx.seed, index))
            with torch.no_grad():
                adv_logits = model(x_adv)
        right_clean = logits.argmax(1) == y
        right_adv = adv_logits.argmax(1) == y
        log.add(index=index, clean_correct=right_clean, adv_correct=right_adv,
                robust=right_clean & right_adv if robust_needs_clean else right_adv,
                loss=per_example_loss(adv_logits, y, cfg.objective), margin=logit_margin(adv_logits, y),
                margin_path=trace.margin_trajectory().T, grad_zero=trace.grad_zero,
                grad_nonfinite=trace.grad_nonfinite, probability_like=diagnostics.probability_like(logits),
                nonfinite=~(torch.isfinite(logits).all(1) & torch.isfinite(adv_logits).all(1)))
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
    outcomes = {k: v for k, v in c.items() if k not in SHARD_COLUMNS}
    return PGDRun(len(survived), int(c["clean_correct"].sum()), int(c["robust"].sum()), outcomes, checks,
                  counted_wrong)


def run_pgd(ctx: EvalContext, cfg: PGDConfig, desc: str, noise_sigma: float = 0.0,
            robust_needs_clean: bool = True) -> PGDRun:
    """PGD over all of ctx.data in this process, with per-image outcomes and the diagnostics
    (curves and sanity checks: NaN/inf logits always stop them)."""
    return pgd_result(pgd_shard(ctx.whole(), cfg, desc, noise_sigma, robust_needs_clean), cfg, desc, None)


def checks_record(checks) -> dict:
    return {c.name: c.as_record() for c in checks}


class PGDRobustAccuracy(Metric):
    """Accuracy on PGD adversarial examples; the image counts as robust only if the model is
    right on the clean image too (its adversarial example starts inside the eps-ball)."""

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
        if run.counted_wrong:
            extra["nonfinite_counted_wrong"] = run.counted_wrong
        return MetricResult(acc, run.n, binomial_stderr(acc, run.n), extra, checks_record(run.checks))


@register_metric
class PGD20(PGDRobustAccuracy):
    name = "pgd20"
    summary = ("robust accuracy, PGD-20 on cross-entropy, random start: L-inf eps 8/255, step 2/255 "
               "(norm L2: eps 0.5, step 0.125)")


@dataclass(frozen=True)
class EnergyPGDConfig(PGDConfig):
    objective: str = "energy"


@register_metric
class PGD20Energy(PGDRobustAccuracy):
    name = "pgd20-energy"
    summary = ("robust accuracy, PGD-20 ascending E(x, y) (eq. 18): L-inf eps 8/255, step 2/255 "
               "(norm L2: eps 0.5, step 0.125)")
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


# ----------------------------------------------------------------------------- AutoAttack


@dataclass(frozen=True)
class AutoAttackParams(Checked):
    LIMITS = {"max_images": "[1, inf)", "chunk_size": "[1, inf)"}
    CHOICES = {"version": ("standard", "plus", "rand"), "norm": NORMS}
    IMPLICIT: ClassVar[dict] = {"norm": "Linf"}  # as PGDConfig's

    eps: float | None = None  # None: the norm's standard budget (8/255 L-inf, 0.5 L2)
    version: str = "standard"  # APGD-CE, APGD-T, FAB-T, Square; 'rand' (APGD with EOT) for randomized models
    max_images: int = 1000  # the first images of --n (AutoAttack is slow); full test set at paper scale
    chunk_size: int = 250  # images per resumable unit; each chunk's result is saved when it ends
    norm: str = "Linf"  # the threat model: "Linf" or "L2"

    def __post_init__(self):
        settle_budget(self)
        super().__post_init__()


@register_metric
class AutoAttackMetric(Metric):
    name = "autoattack"
    summary = ("robust accuracy under standard AutoAttack (pyautoattack), first 1,000 images: L-inf 8/255 "
               "(norm L2: 0.5)")
    Params = AutoAttackParams
    norms = NORMS
    version = 3  # 3: per-image outcomes and diagnostics; 2: chunked runs (1: one run over all images)
    incidental_params = ("max_images", "chunk_size")  # max_images shows as the record's n
    shardable = True  # by chunk: chunk c on rank c mod world size

    def state_file(self, ctx: EvalContext) -> Path:
        """This process's resumable state: <stem>.state.json, or one file per rank under torchrun."""
        world = ctx.world
        return ctx.artifact("state.json" if world.size == 1 else f"state-{world.rank}-of-{world.size}.json")

    def shard(self, ctx: EvalContext) -> Shard:
        p = self.params
        n = min(p.max_images, len(ctx.data))
        chunks = range(-(-n // p.chunk_size))
        mine = [c for c in chunks if c % ctx.world.size == ctx.world.rank]
        x = ctx.data.images[:n].float().div(255)
        y = ctx.data.labels[:n]
        result = run_autoattack(ctx.model, x, y, eps=p.eps, seed=ctx.seed, batch_size=ctx.batch_size,
                                device=ctx.device, state_path=self.state_file(ctx), version=p.version,
                                chunk_size=p.chunk_size, key={"record": ctx.stem}, chunk_ids=mine,
                                nonfinite=ctx.nonfinite, norm=p.norm)
        log = OutcomeLog(("grad_zero", "grad_nonfinite", "nonfinite"))
        if mine:
            log.add(index=chunk_index(p.chunk_size, n, mine), clean_correct=result.clean_flags,
                    adv_correct=result.adv_flags, robust=result.robust_flags, loss=result.loss,
                    margin=result.margin, grad_zero=result.grad_zero, grad_nonfinite=result.grad_nonfinite,
                    nonfinite=result.nonfinite)
        meta = {"robust_after": result.robust_after, "warnings": result.warnings, "chunks": result.chunks,
                "chunks_resumed": result.chunks_resumed, "probability_rows": result.probability_rows,
                "state_file": self.state_file(ctx).name}
        if result.randomized is not None:
            meta["randomized_forward"] = result.randomized.as_record()
        return Shard(log.columns(), [meta])

    def finish(self, ctx: EvalContext, shard: Shard) -> MetricResult:
        c, meta = dict(shard.columns), shard.meta
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
                                           "(its APGD adapts its step and restarts from the best point)")]
        states = [m["state_file"] for m in meta]
        acc = robust / n
        return MetricResult(acc, n, binomial_stderr(acc, n),
                            {"clean_accuracy": clean / n, "per_attack": {a: k / n for a, k in after.items()},
                             "warnings": list(dict.fromkeys(w for m in meta for w in m["warnings"])),
                             "chunks": sum(m["chunks"] for m in meta),
                             "chunks_resumed": sum(m["chunks_resumed"] for m in meta),
                             "state_file": states[0] if len(states) == 1 else states,
                             "outcomes": ctx.artifact("outcomes.npz").name,
                             **({"nonfinite_counted_wrong": counted_wrong} if counted_wrong else {})},
                            checks_record(checks))


# ----------------------------------------------------------------------------- robustness curve


DEFAULT_GRIDS = {"Linf": tuple(e / 255 for e in (0, 1, 2, 3, 4, 6, 8, 10, 12, 16)),
                 "L2": (0.0, 0.125, 0.25, 0.375, 0.5, 0.75, 1.0)}


@dataclass(frozen=True)
class CurveParams(Checked):
    LIMITS = {"steps": "[1, inf)", "step_ratio": "(0, 1]"}
    CHOICES = {"objective": ("ce", "energy"), "norm": NORMS}
    IMPLICIT: ClassVar[dict] = {"norm": "Linf"}  # as PGDConfig's

    eps_grid: tuple[float, ...] | None = None  # None: the norm's grid (0 to 16/255 L-inf, 0 to 1 L2)
    steps: int = 20
    step_ratio: float = 0.25  # step = ratio * eps (2/255 at 8/255)
    objective: str = "ce"
    norm: str = "Linf"

    def __post_init__(self):
        if self.norm in NORMS:
            if self.eps_grid is None:
                object.__setattr__(self, "eps_grid", DEFAULT_GRIDS[self.norm])
            for eps in self.eps_grid:
                check_value("eps_grid", eps, "[0" + BUDGET_RANGE[self.norm][2:])
        super().__post_init__()
        if len(set(self.eps_grid)) < 2:
            raise RangeError("eps_grid", "needs at least two budgets, e.g. 0,4/255,8/255")


def _merge(checks: dict, run_checks, eps: float) -> None:
    """Keep each always-on check once: the first raised one (with the eps it was raised at)."""
    for check in run_checks:
        kept = checks.get(check.name)
        if kept is None or (check.flag and not kept.flag):
            checks[check.name] = replace(check, evidence={**check.evidence, "at_eps": eps})


def _budget_points(grid, accuracy, stderr, norm: str = "Linf") -> list[dict]:
    """Each budget's accuracy must not exceed the next smaller budget's (within one stderr)."""
    labels = [f"eps {budget_text(e, norm)}" for e in grid]
    return [{"label": label, "value": a, "stderr": s, "weaker_than": labels[i - 1] if i else None}
            for i, (label, a, s) in enumerate(zip(labels, accuracy, stderr))]


def normalised_area(grid, accuracy) -> float:
    """Mean accuracy over [min eps, max eps] by the trapezoid rule."""
    area = sum((b - a) * (fa + fb) / 2 for a, b, fa, fb in zip(grid, grid[1:], accuracy, accuracy[1:]))
    return area / (grid[-1] - grid[0])


@torch.no_grad()
def clean_correct(ctx: EvalContext) -> int:
    return sum(int((ctx.model(x).argmax(1) == y).sum()) for x, y, _ in ctx.batches())


@register_metric
class RobustCurve(Metric):
    """PGD accuracy at each eps of a grid (eps 0 is clean accuracy; step = step_ratio * eps).
    value: the normalised area under the curve (mean accuracy over [0, max eps], trapezoid rule);
    the record's extra and raw data hold every point with its standard error."""

    name = "robust-curve"
    draw = staticmethod(robust_curve)
    summary = "PGD-20 robust accuracy against eps (0 to 16/255): normalised area under the curve, and its figure"
    Params = CurveParams
    norms = NORMS

    def compute(self, ctx: EvalContext) -> MetricResult:
        p = self.params
        grid = sorted(set(p.eps_grid))
        accuracy, checks = [], {}
        for eps in grid:
            if eps == 0:
                accuracy.append(clean_correct(ctx) / len(ctx.data))
                continue
            cfg = PGDConfig(eps=eps, step_size=p.step_ratio * eps, steps=p.steps, objective=p.objective,
                            norm=p.norm)
            run = run_pgd(ctx, cfg, f"{self.name} {budget_text(eps, p.norm)}")
            accuracy.append(run.robust / run.n)
            _merge(checks, run.checks, eps)
        n = len(ctx.data)
        stderr = [binomial_stderr(a, n) for a in accuracy]
        checks["budget_monotone"] = diagnostics.budget_monotone(_budget_points(grid, accuracy, stderr, p.norm))
        raw = ctx.artifact("npz")
        write_npz_atomic(raw, eps=np.array(grid), accuracy=np.array(accuracy), stderr=np.array(stderr))
        return MetricResult(normalised_area(grid, accuracy), n, None,
                            {"eps": grid, "accuracy": accuracy, "stderr": stderr, "raw": raw.name,
                             **({"norm": p.norm} if p.norm != "Linf" else {})},
                            checks_record(checks.values()))


# ----------------------------------------------------------------------------- the diagnostics suite


@dataclass(frozen=True)
class SanityParams(Checked):
    LIMITS = {"max_images": "[1, inf)", "more_steps": "[1, inf)", "restarts": "[2, inf)",
              "square_queries": "[1, inf)"}
    CHOICES = {"norm": NORMS}
    IMPLICIT: ClassVar[dict] = {"norm": "Linf"}  # as PGDConfig's

    eps: float | None = None  # None: the norm's standard budget (8/255 L-inf, 0.5 L2)
    max_images: int = 200  # the first images of --n: a modest subset
    more_steps: int = 100  # PGD-100 must not do worse than PGD-20
    restarts: int = 5  # PGD-20 with 5 restarts must not do worse than one run
    square_queries: int = 1000  # the gradient-free attack's budget per image
    norm: str = "Linf"

    def __post_init__(self):
        settle_budget(self)
        super().__post_init__()


def unbounded_eps(norm: str, image_shape) -> float:
    """A budget that reaches every image in [0, 1]: 1 for L-inf, the cube's diagonal sqrt(C*H*W) for L2."""
    return 1.0 if norm == "Linf" else float(np.sqrt(np.prod(image_shape)))


@register_metric
class AttackSanity(Metric):
    """The sanity checks of an attack evaluation on a subset (the `diagnostics` suite):
    PGD-20 at eps = 1 (L2: the cube's diagonal) must reach 0%; PGD-20 accuracy must not rise from eps/2 to eps to 2 eps,
    nor with 100 steps or 5 restarts (beyond one standard error); Square (gradient-free, margin
    loss) must not break images that PGD-20 left robust on both cross-entropy and the same margin
    loss. value: the number of checks raised (0 is the good answer). Cost per image, in
    forward+backward passes: about 21 x 5 (PGD-20 at eps/2, eps, 2 eps, 1, and on the margin)
    + 101 + 105 (more steps, restarts) + square_queries / 3 (forward-only queries): ~640, that is
    ~30 PGD-20 runs on max_images = 200 images."""

    name = "attack-sanity"
    summary = ("sanity of the attack (diagnostics suite, 200 images): unbounded PGD reaches 0%, "
               "accuracy monotone in eps, steps and restarts, Square does not beat PGD; value = checks raised")
    Params = SanityParams
    norms = NORMS
    unit = "checks raised"

    def compute(self, ctx: EvalContext) -> MetricResult:
        p = self.params
        sub = dataclasses.replace(ctx, data=ctx.data.subset(min(p.max_images, len(ctx.data))))
        n = len(sub.data)
        def attack(eps=p.eps, **kw):
            return PGDConfig(eps=eps, norm=p.norm, **kw)

        double = min(1.0, 2 * p.eps) if p.norm == "Linf" else 2 * p.eps
        unbounded = unbounded_eps(p.norm, sub.data.images.shape[1:])
        runs = {"eps": run_pgd(sub, attack(), "sanity: PGD-20")}
        runs["half eps"] = run_pgd(sub, attack(p.eps / 2), "sanity: PGD-20 at eps/2")
        runs["double eps"] = run_pgd(sub, attack(double), "sanity: PGD-20 at 2 eps")
        runs["more steps"] = run_pgd(sub, attack(steps=p.more_steps), f"sanity: PGD-{p.more_steps}")
        runs["restarts"] = run_pgd(sub, attack(restarts=p.restarts), f"sanity: PGD-20 x{p.restarts}")
        runs["unbounded"] = run_pgd(sub, attack(unbounded), f"sanity: PGD-20 at eps {unbounded:.3g}")
        runs["margin loss"] = run_pgd(sub, attack(objective="margin"), "sanity: PGD-20 on the margin")
        accuracy = {k: r.robust / n for k, r in runs.items()}
        stderr = {k: binomial_stderr(a, n) for k, a in accuracy.items()}
        points = [{"label": k, "value": accuracy[k], "stderr": stderr[k], "weaker_than": ref}
                  for k, ref in (("half eps", None), ("eps", "half eps"), ("double eps", "eps"),
                                 ("more steps", "eps"), ("restarts", "eps"))]
        x = sub.data.images.float().div(255)
        square = run_square(sub.model, x, sub.data.labels, p.eps, p.square_queries, sub.seed,
                            sub.batch_size, sub.device, norm=p.norm)
        pgd_robust = torch.from_numpy(runs["eps"].outcomes["robust"] & runs["margin loss"].outcomes["robust"])
        only_square = int((pgd_robust & ~square).sum())
        checks = {c.name: c for c in runs["eps"].checks}
        checks["unbounded"] = diagnostics.unbounded(runs["unbounded"].robust, n)
        checks["budget_monotone"] = diagnostics.budget_monotone(points)
        checks["black_box"] = diagnostics.black_box(only_square, int(pgd_robust.sum()), n)
        raised = sum(bool(c.flag) for c in checks.values())
        return MetricResult(raised, n, None,
                            {"accuracy": accuracy, "square_accuracy": float(square.float().mean()),
                             "broken_only_by_square": only_square},
                            checks_record(checks.values()))
