"""Costs of the evaluation battery, as ratios measured in one run (CPU by default):

- Hutchinson trace with k Rademacher probes vs the exact trace (one product per input dimension),
  in units of one forward+backward of the same model and batch (target: about k + 1 backward
  passes), beside the two obvious alternatives for the Hessian-vector products: all probes in one
  k-times-larger batch, and forward-over-reverse (torch.func.jvp of torch.func.grad);
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


def hutchinson_batched_probes(model, x, k, energy_fn):
    """Alternative: the k probes as one (k * N)-image batch, one gradient and one product."""
    xr = x.repeat(k, 1, 1, 1).requires_grad_(True)
    (g,) = torch.autograd.grad(energy_fn(model(xr)).sum(), xr, create_graph=True)
    v = torch.randint(0, 2, xr.shape, device=x.device).mul_(2).sub_(1).to(x.dtype)
    (hv,) = torch.autograd.grad(g, xr, v)
    return (hv * v).flatten(1).sum(1).view(k, -1).mean(0)


def hutchinson_forward_over_reverse(model, x, k, energy_fn):
    """Alternative: each product as a forward-mode derivative of the reverse-mode gradient."""
    from torch.func import grad, jvp

    grad_fn = grad(lambda xi: energy_fn(model(xi)).sum())
    trace = torch.zeros(len(x), device=x.device)
    for _ in range(k):
        v = torch.randint(0, 2, x.shape, device=x.device).mul_(2).sub_(1).to(x.dtype)
        trace += (jvp(grad_fn, (x,), (v,))[1] * v).flatten(1).sum(1)
    return trace / k


def main():
    from energybench.attacks.autoattack import run_autoattack
    from energybench.attacks.pgd import PGDConfig, pgd
    from energybench.core.runtime import resolve_device
    from energybench.data import load_split
    from energybench.energy.energies import marginal_energy
    from energybench.energy.sgld import SGLDConfig, sgld
    from energybench.metrics.fisher import fisher_terms
    from energybench.training.config import apply_overrides
    from energybench.training.recipes import preset_config
    from energybench.training.trainer import Trainer

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
        lines.append(f"| Hutchinson trace, {k} probes (+ gradient term): {k + 1} backward passes | {sec:.4f} | "
                     f"{sec / unit:.2f} |")
    for name, fn in [("all probes in one batch", hutchinson_batched_probes),
                     ("forward-over-reverse (torch.func)", hutchinson_forward_over_reverse)]:
        sec = median(timed(lambda: fn(model, x, 16, marginal_energy), device, 3, warmup=1))
        rows[f"alternative_16_{name}"] = sec
        lines.append(f"| alternative, 16 probes, {name} | {sec:.4f} | {sec / unit:.2f} "
                     f"({sec / rows['hutchinson_16']:.2f}x ours) |")
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
    per_probe = (rows["hutchinson_16"] - rows["hutchinson_1"]) / 15 / unit
    lines.append(f"\nModel: a 1-epoch `pgd-at` smoke tiny-cnn; exact-pixel test images; device {device}.\n\n"
                 f"Hutchinson with k probes makes exactly k + 1 backward passes (one gradient with its graph, "
                 f"then one Hessian-vector product per probe reusing that graph). Each product is a "
                 f"backward pass through the forward and backward graphs together, so it costs "
                 f"{per_probe:.2f} first-order forward+backward units here, the small constant "
                 f"multiple of a gradient that any exact Hessian-vector product costs (Pearlmutter 1994). "
                 f"Both alternatives are slower on this machine.")
    write_report("battery_costs", {"device": str(device), "results": rows}, "\n".join(lines))


if __name__ == "__main__":
    main()
