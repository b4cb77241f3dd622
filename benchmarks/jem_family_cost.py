"""The JEM family's cost: each recipe's training step beside `jem`'s, and BPDA+EOT's cost per image
beside PGD-20's on the same purified and plain models.

Training: every JEM-family recipe at its smoke preset (tiny-cnn, its own batch size), the median
of single steps through the shared loop after warm-up, and per image of its classification batch;
the ratio is to `jem` in the same run. SAM recipes take two forward+backward passes per update.

Attack: the shipped `jem` smoke checkpoint on exact-pixel test images, purified with STEPS Langevin
steps (`eval --purify`), seconds per image for PGD-20 and for BPDA+EOT at the SADA-JEM code's
values scaled down (steps and EOT copies as given), each timed in the same run.

    python -m benchmarks.jem_family_cost [--device auto] [--steps 10] [--images 32]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from benchmarks._common import SHARED_DATA, median, sync, timed, write_report

RECIPES = ("jem", "jempp", "sadajem", "eb-jdat", "eb-jdat-sadajem")
REPO = Path(__file__).resolve().parents[1]


def step_costs(device, steps: int) -> tuple[list[dict], list[str]]:
    from energybench.training.config import apply_overrides
    from energybench.training.recipes import preset_config
    from energybench.training.trainer import Trainer

    rows, lines = [], ["| recipe | batch | passes/step | step s | ms per image | vs jem |", "|---|---:|---:|---:|---:|---:|"]
    for name in RECIPES:
        cfg = preset_config(name, "smoke")
        cfg = replace(cfg, data=replace(cfg.data, source=str(SHARED_DATA / "cifar10-jpeg75.tar.gz")))
        batch = cfg.optim.batch_size
        cfg = apply_overrides(cfg, [f"data.train_subset={batch * (steps + 10)}", "data.eval_subset=0",
                                    "run.dynamics_probe=0", "optim.epochs=5"])
        with tempfile.TemporaryDirectory() as tmp:
            trainer = Trainer(cfg, tmp, device)
            trainer.run(stop_after_steps=3)  # warm-up
            sync(device)
            seconds = median(timed(lambda: trainer.run(stop_after_steps=trainer.global_step + 1), device, steps,
                                   warmup=0))
        rows.append({"recipe": name, "batch": batch, "passes_per_step": trainer.recipe.passes_per_step(),
                     "step_seconds": seconds, "ms_per_image": 1000 * seconds / batch})
    jem = rows[0]["ms_per_image"]
    for row in rows:
        row["vs_jem"] = row["ms_per_image"] / jem
        lines.append(f"| {row['recipe']} | {row['batch']} | {row['passes_per_step']} | {row['step_seconds']:.4f} | "
                     f"{row['ms_per_image']:.2f} | {row['vs_jem']:.2f} |")
        print(lines[-1], flush=True)
    return rows, lines


def attack_costs(device, images: int, purify_steps: int, bpda_steps: int, eot: int, chains: int):
    from energybench.evaluation.runner import evaluate
    from energybench.energy.purification import PurificationConfig

    data = str(SHARED_DATA / "cifar10-test-exact-1017.npz")
    rows = []
    lines = ["| purification steps | metric | protocol | s per image | vs PGD-20 |", "|---:|---|---|---:|---:|"]
    for steps in (0, purify_steps):
        purification = PurificationConfig(steps=steps, chains=chains) if steps else None
        times = {}
        for metric, overrides in (("pgd20", {}), ("bpda-eot", {"steps": bpda_steps, "eot": eot})):
            with tempfile.TemporaryDirectory() as tmp:
                sync(device)
                start = time.perf_counter()
                evaluate(REPO / "checkpoints" / "jem-smoke.pt", [metric], data=data, n=images, out_dir=tmp,
                         device=device, batch_size=images, log=lambda m: None, overrides=overrides,
                         purification=purification)
                sync(device)
                times[metric] = (time.perf_counter() - start) / images
        for metric, per_image in times.items():
            protocol = "20 steps" if metric == "pgd20" else f"{bpda_steps} steps, eot {eot}"
            rows.append({"purify_steps": steps, "chains": chains if steps else None, "metric": metric,
                         "protocol": protocol, "seconds_per_image": per_image,
                         "vs_pgd20": per_image / times["pgd20"]})
            lines.append(f"| {steps} | {metric} | {protocol} | {per_image:.3f} | {per_image / times['pgd20']:.2f} |")
            print(lines[-1], flush=True)
    return rows, lines


def main():
    from energybench.core.runtime import resolve_device

    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=10, help="training steps timed per recipe")
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--purify-steps", type=int, default=10)
    parser.add_argument("--bpda-steps", type=int, default=10)
    parser.add_argument("--eot", type=int, default=5)
    parser.add_argument("--chains", type=int, default=20)
    args = parser.parse_args()
    device = resolve_device(args.device)
    train_rows, train_lines = step_costs(device, args.steps)
    attack_rows, attack_lines = attack_costs(device, args.images, args.purify_steps, args.bpda_steps, args.eot,
                                             args.chains)
    text = "\n".join([
        "## Training step", "", *train_lines, "",
        f"Smoke presets (tiny-cnn width 48, no batch norm), each recipe's own batch, median of {args.steps} single "
        "steps after 3 warm-up steps; 'vs jem' compares cost per image of the classification batch. The SAM "
        "recipes recompute their loss at perturbed weights (a second forward+backward of every term).", "",
        "## BPDA+EOT per image", "", *attack_lines, "",
        f"The shipped jem smoke checkpoint on the first {args.images} exact-pixel test images, one batch; "
        f"purified with {args.purify_steps} Langevin steps and {args.chains} chains per prediction. BPDA+EOT's "
        "cost grows with steps x eot x (purification steps + 1), plus one prediction per candidate break; "
        "the SADA-JEM code's values (50 steps, eot 15, 150 chains) cost proportionally more.",
    ])
    write_report("jem_family_cost", {"device": str(device), "training": train_rows, "attack": attack_rows}, text)


if __name__ == "__main__":
    main()
