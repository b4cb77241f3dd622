"""Did the attack work? Indicators of attack failure, run on every robustness number.

A robust accuracy is only an upper bound if the attack could find the adversarial examples that
exist. These checks look for the ways an evaluation overstates robustness (AutoAttack's
flags_doc.md; Pintor et al. 2021, "Indicators of Attack Failure"; Carlini et al. 2019, "On
Evaluating Adversarial Robustness"; Athalye et al. 2018 on randomized and shattered gradients).

Always on, from what the attack computes anyway (at most one extra forward of one batch):
    randomized_forward       two forwards of the same batch disagree: gradients are noisy, and
                             a single-sample attack overstates robustness; use EOT
    probability_output       the model returns probabilities (rows >= 0 summing to 1): the
                             cross-entropy of probabilities has vanishing gradients
    unavailable_gradients    images that survived the attack had an all-zero or NaN/inf input
                             gradient at the start: the attack could not move them
    incomplete_optimisation  images that survived were still being pushed towards the decision
                             boundary in the last fifth of the steps (their logit margin still
                             falling): more steps would break more. Raised only on evidence: at
                             least two such images, and more than honest attacks leave (a one-sided
                             binomial test against HONEST_RISING_RATE)
    gradient_direction       on a few clean images, one attack step along the input gradient
                             raises the attack's loss no more than random steps of the same size:
                             the gradient is noise (masked while non-zero), the attack a random walk

The `diagnostics` suite (metric `attack-sanity`) adds, on a subset:
    unbounded                PGD at eps = 1 (L2: sqrt(C H W)) must reach 0% robust accuracy
    budget_monotone          accuracy must not rise with eps, nor with more steps or restarts
                             (beyond one standard error)
    black_box                images a gradient-free attack (Square) breaks but PGD did not

Each check is a `Check`: flag True (raised), False (passed) or None (not assessed, with the
reason), its evidence (counts, values) and what to do about it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from energybench.attacks.pgd import ascent_step, per_example_loss
from energybench.core.runtime import eval_mode, make_generator

# A gradient check is raised when its share of the considered images exceeds GRADIENT_SHARE (and
# at least one image is concerned): honest models leave it at 0.
GRADIENT_SHARE = 0.01  # of the surviving images
# Incomplete optimisation needs evidence: at least RISING_MIN_IMAGES still-improving images, and
# a count that a per-image rate of HONEST_RISING_RATE would exceed with probability below
# RISING_ALPHA. The rate bounds what honest PGD-20 leaves on honest models (measured on images
# the false-positive study does not use: reports/benchmarks/diagnostics_false_positives.md).
RISING_MIN_IMAGES = 2
HONEST_RISING_RATE = 0.01
RISING_ALPHA = 0.001
RISING_WINDOW = 0.2  # the last fifth of the iterates
RISING_PROGRESS = 0.1  # share of an image's whole progress made in that window
RANDOM_TOLERANCE = 1e-4  # relative difference of two forwards' logits
PROBABILITY_SHARE = 0.99
PROBE_IMAGES = 16  # the gradient-direction probe: images of the first batch,
PROBE_DIRECTIONS = 8  # random steps each (a noise gradient beats all of them with probability 1/9),
PROBE_MIN_IMAGES = 4  # and the fewest usable images it judges from

TITLES = {
    "randomized_forward": "randomized forward",
    "probability_output": "probability output",
    "unavailable_gradients": "unavailable gradients",
    "incomplete_optimisation": "incomplete optimisation",
    "gradient_direction": "gradient does not help the attack",
    "unbounded": "unbounded attack does not reach 0%",
    "budget_monotone": "accuracy not monotone in the attack budget",
    "black_box": "black-box attack beats white-box",
}

ADVICE = {
    "randomized_forward": "attack with EOT (the protocol value eot=10 for the PGD metrics) or "
                          "AutoAttack with version=rand, and report both",
    "probability_output": "evaluate the model's logits (remove the final softmax)",
    "unavailable_gradients": "the model masks its gradients (a non-differentiable or saturating "
                             "layer): use BPDA or a gradient-free attack (AutoAttack's Square)",
    "incomplete_optimisation": "run more steps (the protocol value steps=100) or AutoAttack",
    "gradient_direction": "the input gradient is noise (masked gradients that are not zero): report a "
                          "gradient-free attack (AutoAttack's Square; the diagnostics suite) or BPDA",
    "unbounded": "the attack cannot break the model even without a budget: gradients are masked "
                 "or the model is not what it seems; do not trust its robust accuracy",
    "budget_monotone": "the attack is weaker than it should be at some budgets: use more steps, "
                       "restarts or AutoAttack",
    "black_box": "gradient masking: report the gradient-free attack's (or AutoAttack's) number",
}


@dataclass
class Check:
    """One indicator's verdict: flag True (raised), False (passed), None (not assessed)."""

    name: str
    flag: bool | None
    evidence: dict = field(default_factory=dict)
    note: str = ""  # why it was not assessed, where it was not
    advice: str = ""  # what to do, where the general ADVICE does not fit the model

    def as_record(self) -> dict:
        out = {"title": TITLES[self.name], "flag": self.flag, "evidence": self.evidence}
        if self.note:
            out["note"] = self.note
        if self.flag:
            out["advice"] = self.advice or ADVICE[self.name]
        return out


def _share(count: int, total: int) -> float:
    return count / total if total else 0.0


# --------------------------------------------------------------------------- always-on checks

@torch.no_grad()
def randomized_forward(model: nn.Module, x: torch.Tensor, first: torch.Tensor) -> Check:
    """`first` are the logits of `x` already computed; one more forward of the same batch."""
    if not len(x):
        return not_assessed("randomized_forward", "no image to run twice")
    again = model(x)
    finite = torch.isfinite(first) & torch.isfinite(again)
    # a NaN or infinite logit that comes back the same is deterministic (NaN != NaN notwithstanding)
    same_nonfinite = ~torch.isfinite(first) & ((again == first) | (torch.isnan(again) & torch.isnan(first)))
    mismatched = int((~(finite | same_nonfinite)).sum())
    diff = float((again - first).abs()[finite].max()) if finite.any() else 0.0
    scale = float(first.abs()[finite].max()) if finite.any() else 0.0
    changed = int((again.argmax(1) != first.argmax(1)).sum())
    flag = mismatched > 0 or diff > RANDOM_TOLERANCE * (1.0 + scale)
    return Check("randomized_forward", flag, {"images": len(x), "max_abs_logit_difference": diff,
                                              "changed_predictions": changed,
                                              "nonfinite_logits_changed": mismatched})


@torch.no_grad()
def probability_like(logits: torch.Tensor) -> torch.Tensor:
    """Which rows of logits (N, K) look like probabilities: >= 0 and summing to 1; (N,) bool."""
    return (logits >= 0).all(1) & ((logits.sum(1) - 1).abs() < 1e-3)


def probability_rows(logits: torch.Tensor) -> int:
    """How many rows of logits (N, K) look like probabilities."""
    return int(probability_like(logits).sum())


def probability_output(logits: torch.Tensor | None = None, rows: int | None = None,
                       total: int | None = None) -> Check:
    """From the clean logits (N, K), or from a count of probability-like rows out of `total`."""
    if logits is not None:
        rows, total = probability_rows(logits), len(logits)
    if not total:
        return not_assessed("probability_output", "no logits to look at")
    share = _share(rows, total)
    return Check("probability_output", bool(total) and share >= PROBABILITY_SHARE,
                 {"images": total, "share_rows_like_probabilities": share})


def unavailable_gradients(grad_zero: torch.Tensor, grad_nonfinite: torch.Tensor,
                          survived: torch.Tensor) -> Check:
    """Start gradients (N,) bool and which images survived the attack (N,) bool."""
    zero = int((grad_zero & survived).sum())
    nonfinite = int((grad_nonfinite & survived).sum())
    bad = int(((grad_zero | grad_nonfinite) & survived).sum())
    total = int(survived.sum())
    if not total:
        return not_assessed("unavailable_gradients", "no image survived the attack")
    share = _share(bad, total)
    return Check("unavailable_gradients", bad >= 1 and share > GRADIENT_SHARE,
                 {"surviving_images": total, "zero_gradient": zero, "nonfinite_gradient": nonfinite,
                  "share": share})


def binomial_tail(count: int, n: int, rate: float) -> float:
    """P(X >= count) for X ~ Binomial(n, rate): how surprising `count` events in n trials are."""
    if count <= 0:
        return 1.0
    return float(sum(math.comb(n, k) * rate ** k * (1 - rate) ** (n - k) for k in range(count, n + 1)))


def incomplete_optimisation(margins: torch.Tensor, final: torch.Tensor, survived: torch.Tensor) -> Check:
    """margins (T, N): the logit margin at iterates 0..T-1 (what decides robustness, whatever the
    objective); final (N,): at the returned example; survived (N,) bool. An image that survived is
    still improving when the attack's progress on it (the fall of its margin from the start) in the
    last fifth of the iterates is more than RISING_PROGRESS of its whole progress. Raised when at
    least RISING_MIN_IMAGES images are, and so many that honest attacks (a per-image rate of
    HONEST_RISING_RATE) would leave that many with probability below RISING_ALPHA: the robust
    accuracy would fall with more steps. One image is never evidence."""
    m = torch.cat([margins.cpu().float(), final.view(1, -1).cpu().float()])
    steps = m.shape[0] - 1
    if steps < 2:
        return Check("incomplete_optimisation", None, {}, "fewer than two attack steps")
    if not bool(survived.any()):
        return not_assessed("incomplete_optimisation", "no image survived the attack")
    window = max(1, math.ceil(RISING_WINDOW * steps))
    early_best = m[: steps + 1 - window].min(0).values
    late_best = m[steps + 1 - window:].min(0).values
    total_progress = (m[0] - m.min(0).values).clamp(min=0)
    late_progress = (early_best - late_best).clamp(min=0)
    still = (late_progress > RISING_PROGRESS * total_progress) & (late_progress > 1e-4 * (1 + m[0].abs()))
    still &= survived.cpu()
    count, n = int(still.sum()), m.shape[1]
    p_value = binomial_tail(count, n, HONEST_RISING_RATE)
    return Check("incomplete_optimisation", count >= RISING_MIN_IMAGES and p_value < RISING_ALPHA,
                 {"images": n, "surviving_images": int(survived.sum()), "still_improving": count,
                  "share_of_images": _share(count, n), "window_steps": window,
                  "p_value_vs_honest_rate": p_value})


def _random_directions(shape: torch.Size, count: int, norm: str, seed: int) -> torch.Tensor:
    """(count, N, ...) random directions drawn on CPU from `seed`, as `ascent_step` takes a gradient:
    random signs (Linf) or Gaussian directions, which it scales to the step's L2 length (L2)."""
    gen = make_generator(seed)
    if norm == "L2":
        return torch.randn((count, *shape), generator=gen)
    return torch.randint(0, 2, (count, *shape), generator=gen).float().mul_(2).sub_(1)


def gradient_direction(model: nn.Module, x: torch.Tensor, y: torch.Tensor, step: float, norm: str = "Linf",
                       objective: str = "ce", seed: int = 0) -> Check:
    """Does the input gradient point uphill? On the first PROBE_IMAGES images of x (N, C, H, W) in
    [0, 1] with labels y (N,): the rise of the attack's per-image loss after one step of size `step`
    along the gradient's step direction (sign for Linf, unit length for L2), against PROBE_DIRECTIONS
    random steps of the same size (drawn from `seed`). An honest gradient beats every random step on
    nearly every image (in 3,072 dimensions the gradient's first-order rise is tens of times a random
    step's); a gradient that is noise beats them all with probability 1 / (PROBE_DIRECTIONS + 1).
    Raised when it does so on fewer than half of at least PROBE_MIN_IMAGES images whose gradient is
    finite and non-zero and whose loss moves. Cost: one forward-backward and PROBE_DIRECTIONS + 2
    forwards of PROBE_IMAGES images."""
    x, y = x[:PROBE_IMAGES].detach(), y[:PROBE_IMAGES]
    with eval_mode(model), torch.enable_grad():
        probe = x.clone().requires_grad_(True)
        loss = per_example_loss(model(probe), y, objective)
        (grad,) = torch.autograd.grad(loss.sum(), probe)
    with torch.no_grad(), eval_mode(model):
        base = loss.detach()

        def rise(direction):  # one attack step from x, as PGD takes it, kept in [0, 1]
            moved = ascent_step(x.clone(), direction, step, norm).clamp_(0.0, 1.0)
            return per_example_loss(model(moved), y, objective) - base

        along = rise(grad)
        randoms = torch.stack([rise(d.to(x.device, x.dtype))
                               for d in _random_directions(x.shape, PROBE_DIRECTIONS, norm, seed)])
    flat = grad.flatten(1)
    usable = torch.isfinite(flat).all(1) & (flat != 0).any(1) & torch.isfinite(along) \
        & torch.isfinite(randoms).all(0) & ((along != 0) | (randoms != 0).any(0))
    beats = (along > randoms.max(0).values) & usable
    considered, helped = int(usable.sum()), int(beats.sum())
    evidence = {"images": len(x), "considered": considered, "gradient_beats_every_random_step": helped,
                "random_steps": PROBE_DIRECTIONS, "step": step}
    if considered < PROBE_MIN_IMAGES:
        return Check("gradient_direction", None, evidence,
                     f"fewer than {PROBE_MIN_IMAGES} images with a finite, non-zero gradient and a loss that moves")
    evidence["median_rise_along_gradient"] = float(along[usable].median())
    evidence["median_best_random_rise"] = float(randoms.max(0).values[usable].median())
    return Check("gradient_direction", 2 * helped < considered, evidence)


PURIFIED_ADVICE = ("the model purifies its input by Langevin dynamics, a randomized defence whose "
                   "gradients a plain attack cannot use: this number overstates its robustness; evaluate it "
                   "with the bpda-eot metric (BPDA+EOT, Hill et al. 2021)")


def purified_randomness(check: Check) -> Check:
    """A raised randomized-forward check on a purified model: its advice names BPDA+EOT."""
    return Check(check.name, check.flag, check.evidence, check.note, PURIFIED_ADVICE if check.flag else "")


def expected_randomness(check: Check) -> Check:
    """The randomized-forward check on a BPDA+EOT record: randomness is what that attack is for
    (it averages over purifications and confirms every break), so it is recorded, not raised."""
    if not check.flag:
        return check
    return Check(check.name, False, check.evidence,
                 "randomized, as a purified model is; BPDA+EOT averages its gradients over purifications "
                 "and confirms every break on the defence's own prediction")


def from_record(name: str, stored: dict) -> Check:
    """A check saved with `as_record` (e.g. in AutoAttack's resumable state)."""
    return Check(name, stored.get("flag"), stored.get("evidence", {}), stored.get("note", ""),
                 stored.get("advice", "") if stored.get("advice") != ADVICE.get(name) else "")


def not_assessed(name: str, why: str) -> Check:
    return Check(name, None, {}, why)


# --------------------------------------------------------------------------- the sanity suite

def unbounded(robust: int, n: int) -> Check:
    return Check("unbounded", robust > 0, {"images": n, "robust_at_eps_1": robust,
                                           "robust_accuracy": _share(robust, n)})


def budget_monotone(points: list[dict]) -> Check:
    """points: [{"label", "value", "stderr", "weaker_than": label or None}] where a point must not
    exceed the point it names by more than one standard error (of the larger of the two)."""
    by_label = {p["label"]: p for p in points}
    violations = []
    for p in points:
        ref = by_label.get(p.get("weaker_than"))
        if ref is None:
            continue
        slack = max(p["stderr"], ref["stderr"])
        if p["value"] > ref["value"] + slack:
            violations.append(f"{p['label']} {p['value']:.4f} > {ref['label']} {ref['value']:.4f}")
    evidence = {p["label"]: p["value"] for p in points}
    evidence["violations"] = "; ".join(violations) or "none"
    return Check("budget_monotone", bool(violations), evidence)


def black_box(blackbox_only: int, pgd_robust: int, n: int) -> Check:
    """blackbox_only: images the gradient-free attack broke that PGD left robust."""
    if not pgd_robust:
        return not_assessed("black_box", "PGD left no image robust: there is nothing to compare")
    return Check("black_box", blackbox_only >= 1 and _share(blackbox_only, n) > GRADIENT_SHARE,
                 {"images": n, "pgd_robust": pgd_robust, "broken_only_by_black_box": blackbox_only})
