"""Costs of the evaluation battery, as ratios measured in one run (CPU by default):

- Hutchinson trace with k Rademacher probes vs the exact trace (one product per input dimension),
  in units of one forward+backward of the same model and batch (target: about k + 1);
- SGLD steps per second, relative to one forward+backward;
- AutoAttack (standard) seconds per image on a trained smoke model, vs PGD-20 seconds per image.

    python -m benchmarks.battery_costs [--device auto]
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import torch
import torch.nn.functional as F

from benchmarks._common import SHARED_DATA, median, sync, timed, write_report


def main():
    from energybench.attacks import PGDConfig, pgd
    from energybench.autoattack import run_autoattack
    from energybench.config import apply_overrides
    from energybench.data import load_split
    from energybench.metrics.fisher import fisher_terms
    from energybench.recipes import preset_config
    from energybench.runtime import resolve_device
    from energybench.sampling import SGLDConfig, sgld
    from energybench.trainer import Trainer

    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    import tempfile

    cfg = preset_config("pgd-at", "smoke")
    cfg = replace(cfg, data=replace(cfg.data, source=str(SHARED_DATA / "cifar10-jpeg75.tar.gz")))
    cfg = apply_overrides(cfg, ["data.train_subset=2560", "optim.epochs=1", "data.eval_subset=0",
                                "run.dynamics_probe=0"])
    with tempfile.TemporaryDirectory() as tmp:  # a briefly adversarially trained smoke model
        trainer = Trainer(cfg, tmp, device)
        trainer.run()
        model = trainer.model.eval()
    test = load_split(SHARED_DATA / "cifar10-test-exact-1017.npz", "test")
    batch = 32
    x = test.images[:batch].float().div(255).to(device)
    y = test.labels[:batch].to(device)

    def fwd_bwd():
        xx = x.clone().requires_grad_(True)
        torch.autograd.grad(F.cross_entropy(model(xx), y, reduction="sum"), xx)

    unit = median(timed(fwd_bwd, device, 10, warmup=2))
    rows = {"forward_backward_s": unit}
    lines = ["| what | seconds | in forward+backward units |", "|---|---:|---:|",
             f"| one forward+backward (batch {batch}) | {unit:.4f} | 1.00 |"]
    for k in (1, 4, 16):
        sec = median(timed(lambda: fisher_terms(model, x, y, "marginal", k, torch.Generator(device=device).manual_seed(0)),
                           device, 3, warmup=1))
        rows[f"hutchinson_{k}"] = sec
        lines.append(f"| Hutchinson trace, {k} probes (+ gradient term) | {sec:.4f} | {sec / unit:.2f} (about {k + 1} expected) |")
    small = x[:4]
    sec_exact = median(timed(lambda: fisher_terms(model, small, y[:4], "marginal", 1, None, exact=True),
                             device, 1, warmup=0))
    unit_small = median(timed(lambda: torch.autograd.grad(
        F.cross_entropy(model(small.clone().requires_grad_(True)), y[:4], reduction="sum"),
        model.parameters(), allow_unused=True), device, 5, warmup=1))
    rows["exact_trace_4_images"] = sec_exact
    lines.append(f"| exact trace, 4 images (3,072 products) | {sec_exact:.2f} | "
                 f"{sec_exact / unit_small:.0f} (batch-4 units) |")
    cfg_sgld = SGLDConfig(steps=20)
    sec = median(timed(lambda: sgld(model, torch.rand_like(x), cfg_sgld, torch.Generator(device=device)),
                       device, 3, warmup=1))
    rows["sgld_steps_per_s"] = 20 / sec
    lines.append(f"| SGLD, 20 steps | {sec:.4f} | {sec / unit:.2f} ({20 / sec:.0f} steps/s at batch {batch}) |")
    n_aa = 64
    xa, ya = test.images[:n_aa].float().div(255), test.labels[:n_aa]
    sec_pgd = median(timed(lambda: pgd(model, xa.to(device), ya.to(device), PGDConfig(),
                                       torch.Generator(device=device).manual_seed(0)), device, 2, warmup=1))
    import time

    start = time.perf_counter()
    result = run_autoattack(model, xa, ya, eps=8 / 255, seed=0, batch_size=n_aa, device=device)
    sync(device)
    sec_aa = time.perf_counter() - start
    rows.update({"pgd20_s_per_image": sec_pgd / n_aa, "autoattack_s_per_image": sec_aa / n_aa,
                 "autoattack_robust": result.robust_accuracy})
    lines.append(f"| PGD-20, {n_aa} images | {sec_pgd:.2f} | {sec_pgd / n_aa * 1000:.1f} ms/image |")
    lines.append(f"| AutoAttack standard, {n_aa} images | {sec_aa:.1f} | {sec_aa / n_aa * 1000:.0f} ms/image "
                 f"= {sec_aa / sec_pgd:.0f}x PGD-20 (robust acc. {result.robust_accuracy:.2f}; the "
                 f"more images survive APGD, the more FAB-T and Square cost) |")
    lines.append(f"\nModel: a 1-epoch `pgd-at` smoke tiny-cnn; exact-pixel test images; device {device}.")
    write_report("battery_costs", {"device": str(device), "results": rows}, "\n".join(lines))


if __name__ == "__main__":
    main()
