"""What an evaluation will cost, said before it is paid: image gradient passes per metric (one
forward + backward of one image) and a time estimate from a short timed warm-up on the model.

Each metric counts its own passes (`Metric.gradient_passes`, from its protocol: PGD steps x
restarts x EOT samples, SGLD steps of generated samples, Hutchinson probes, robustness-curve
budgets, AutoAttack's first attack, attack-sanity's attacks and Square queries) and names the work
it cannot count (`Metric.uncounted`: AutoAttack's later attacks, which stop on broken images, the
SSIM search, Inception features); the plan says so. A long plan names a smaller n that fits
QUICK_LOOK_SECONDS (`smaller_n`).
"""

from __future__ import annotations

import time

import torch


def seconds_per_pass(model, x: torch.Tensor, batch_size: int | None = None) -> float:
    """Seconds of one image's forward+backward in batches of `batch_size` (default len(x)), from
    timed passes on x (N, 3, H, W) in [0, 1]: the fastest of two passes on a quarter of x and on
    all of it give a fixed cost per call and a cost per image (a line through the two), so small
    models, whose time is mostly per-call overhead, are not charged that overhead per image.
    Leaves no trace: no parameter .grad, torch's RNG state as it was."""
    def one_pass(inputs) -> float:
        inputs = inputs.detach().clone().requires_grad_(True)
        start = time.perf_counter()
        torch.autograd.grad(model(inputs).logsumexp(1).sum(), inputs)  # input gradient only
        if x.device.type == "cuda":
            torch.cuda.synchronize(x.device)
        return time.perf_counter() - start

    devices = [x.device] if x.device.type == "cuda" else []
    small = x[:max(1, len(x) // 4)]
    with torch.random.fork_rng(devices=devices), torch.enable_grad():
        one_pass(small)  # untimed: first-call allocations
        t_small = min(one_pass(small) for _ in range(2))
        t_all = min(one_pass(x) for _ in range(2))
    batch = batch_size or len(x)
    if len(x) == len(small):
        return t_all / len(x)
    per_image = max((t_all - t_small) / (len(x) - len(small)), 0.0)
    per_call = max(t_small - per_image * len(small), 0.0)
    return max(per_image + per_call / batch, 1e-9)


def duration_text(seconds: float) -> str:
    """45 -> '45 s', 600 -> '10 minutes', 7200 -> '2.0 hours', 400000 -> '4.6 days'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} minutes"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} hours"
    return f"{seconds / 86400:,.1f} days"


def plan_line(metrics: list, n: int, num_classes: int, per_pass: float) -> tuple[str, float]:
    """(the sentence announcing the work, its estimated seconds)."""
    passes = sum(m.gradient_passes(n, num_classes) for m in metrics)
    seconds = passes * per_pass
    left_out = sorted({m.uncounted for m in metrics if m.uncounted})
    return (f"plan: {', '.join(m.name for m in metrics)} on {n:,} images: about {passes:,.0f} image "
            f"gradient passes, roughly {duration_text(seconds)} from a timed warm-up"
            + (f" (not counted: {', '.join(left_out)})" if left_out else "")), seconds


QUICK_LOOK_SECONDS = 15 * 60  # what a first look at a model should take
QUICK_SIZES = (5000, 2000, 1000, 500, 200, 100)


def smaller_n(metrics: list, n: int, num_classes: int, per_pass: float) -> tuple[int, float] | None:
    """The largest of QUICK_SIZES below n whose estimate fits QUICK_LOOK_SECONDS, and that estimate;
    None when none does (or n is already that small)."""
    for size in QUICK_SIZES:
        if size < n:
            seconds = sum(m.gradient_passes(size, num_classes) for m in metrics) * per_pass
            if seconds <= QUICK_LOOK_SECONDS:
                return size, seconds
    return None
