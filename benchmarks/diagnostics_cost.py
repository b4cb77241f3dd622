"""What the attack-failure diagnostics cost, measured in one run on the same model and images:

- the `pgd20` metric's loop (`run_pgd`: per-image random starts, the attack's trace of margins and
  start gradients, per-image outcomes, one extra forward of the first batch for the
  randomized-forward check) vs the bare loop it replaced (`attacks.pgd` per batch with a batch
  generator, then clean and adversarial predictions). Goal: at most 1.05x.
- the `diagnostics` suite's `attack-sanity` metric on its 200-image subset vs `pgd20` on the same
  200 images.

    python -m benchmarks.diagnostics_cost [--device auto] [--repeats 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

import torch

from benchmarks._common import REPO, SHARED_DATA, median, timed, write_report

# (label, model, batch, images, whether to time the sanity suite too: ~30 PGD-20 runs of 200
# images, which a PreAct ResNet-18 makes a 40-minute job on a 2-core CPU)
CASES = [("tiny-cnn (pgd-at smoke checkpoint)", "checkpoint", 256, 512, True),
         ("preact-resnet18 (seeded weights)", "preact-resnet18", 64, 128, False)]


def _model(kind: str, device):
    from energybench.handles.checkpoint import load_model
    from energybench.models import create_model

    if kind == "checkpoint":
        return load_model(REPO / "checkpoints" / "pgd-at-smoke.pt", device).model
    torch.manual_seed(0)
    return create_model(kind).to(device).eval()


def _data(n: int):
    from energybench.data import in_memory, load_split

    exact = SHARED_DATA / "cifar10-test-exact-1017.npz"
    if exact.exists():
        return load_split(exact, "test").subset(n)
    gen = torch.Generator().manual_seed(0)
    return in_memory(torch.randint(0, 256, (n, 32, 32, 3), generator=gen, dtype=torch.uint8),
                     torch.randint(0, 10, (n,), generator=gen), label="synthetic")


def bare_pgd20(ctx, cfg) -> int:
    """The loop before the diagnostics: attack each batch, count right clean & adversarial."""
    from energybench.attacks.pgd import pgd
    from energybench.core.runtime import derive_seed, make_generator

    robust = 0
    for x, y, offset in ctx.batches():
        x_adv = pgd(ctx.model, x, y, cfg, make_generator(derive_seed(ctx.seed, offset), ctx.device))
        with torch.no_grad():
            robust += int(((ctx.model(x).argmax(1) == y) & (ctx.model(x_adv).argmax(1) == y)).sum())
    return robust


def main():
    from energybench.attacks import diagnostics
    from energybench.attacks.pgd import PGDConfig
    from energybench.core.runtime import exact_float32, resolve_device
    from energybench.metrics import METRICS, EvalContext
    from energybench.metrics.robustness import run_pgd

    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    device = resolve_device(args.device)
    cfg = PGDConfig()
    rows, lines = [], ["| model | images | bare PGD-20 loop (s) | pgd20 with diagnostics (s) | ratio | "
                       "gradient-direction probe (s) | probe / pgd20 | "
                       "attack-sanity on 200 (s) | pgd20 on 200 (s) | sanity / pgd20 |",
                       "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    with tempfile.TemporaryDirectory() as tmp, exact_float32():
        for label, kind, batch, images, with_sanity in CASES:
            model = _model(kind, device)
            data = _data(images)
            ctx = EvalContext(model, data, device, batch, 0, Path(tmp), stem="bench")
            bare = timed(lambda: bare_pgd20(ctx, cfg), device, args.repeats)
            ours = timed(lambda: run_pgd(ctx, cfg, "bench"), device, args.repeats)
            ratio = median(ours) / median(bare)
            x, y = next(iter(ctx.batches()))[:2]
            probe = timed(lambda: diagnostics.gradient_direction(model, x, y, cfg.step, cfg.norm), device,
                          args.repeats)
            row = {"model": label, "images": len(data), "batch": batch, "bare_seconds": bare,
                   "diagnosed_seconds": ours, "ratio": ratio, "probe_seconds": probe,
                   "probe_over_pgd20": median(probe) / median(ours)}
            suite_text = "| – | – | – |"
            if with_sanity:
                small = dataclasses.replace(ctx, data=data.subset(200))
                sanity_metric = METRICS.get("attack-sanity")(METRICS.get("attack-sanity").Params())
                sanity = timed(lambda: sanity_metric.compute(small), device, 1, warmup=0)
                pgd_small = timed(lambda: run_pgd(small, cfg, "bench"), device, args.repeats)
                suite = median(sanity) / median(pgd_small)
                row.update(sanity_seconds=sanity, pgd20_200_seconds=pgd_small, sanity_over_pgd20=suite)
                suite_text = f"| {median(sanity):.1f} | {median(pgd_small):.2f} | {suite:.1f} |"
            rows.append(row)
            lines.append(f"| {label} | {len(data)} | {median(bare):.2f} | {median(ours):.2f} | {ratio:.3f} "
                         f"| {median(probe):.3f} | {median(probe) / median(ours):.4f} " + suite_text)
    markdown = "\n".join(lines + [
        "", "Ratio: pgd20's loop with the always-on diagnostics (the probe included) and per-image outcomes "
        "over the bare loop (goal <= 1.05). The probe runs once per evaluation, on 16 images of the first "
        "batch. The sanity suite runs 7 PGD attacks (PGD-20 at eps/2, eps, 2 eps, 1 and "
        "on the margin loss, PGD-100, PGD-20 x 5 restarts) and Square (1,000 queries) on 200 images."])
    write_report("diagnostics_cost", {"device": str(device), "rows": rows}, markdown)


if __name__ == "__main__":
    main()
