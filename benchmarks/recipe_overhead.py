"""Each recipe's cost per training step through the shared loop, divided by the cost of the
forward+backward passes its algorithm needs (attack steps + SGLD steps + the update, as each recipe
counts them in `passes_per_step`), each pass priced as one bare forward+backward of the same model
on one batch. A ratio near 1 means the loop adds nothing; attack/SGLD passes only differentiate
with respect to the input, so they can cost less than a full pass and the ratio can fall below 1.

    python -m benchmarks.recipe_overhead [--device auto] [--steps 20] [--batch 128]
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace

import torch
import torch.nn.functional as F

from benchmarks._common import SHARED_DATA, median, sync, timed, write_report


def bare_pass_seconds(model, batch: int, device, repeats: int = 10) -> float:
    x = torch.rand(batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    model.train()

    def one():
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()

    return median(timed(one, device, repeats, warmup=3))


def main():
    from energybench.core.runtime import resolve_device
    from energybench.training.config import apply_overrides
    from energybench.training.recipes import preset_config, recipe_names
    from energybench.training.trainer import Trainer

    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=128)
    args = parser.parse_args()
    device = resolve_device(args.device)
    rows, lines = [], ["| recipe | passes/step | step s | bare pass s | ratio |", "|---|---:|---:|---:|---:|"]
    for name in recipe_names():
        cfg = preset_config(name, "smoke")
        cfg = replace(cfg, data=replace(cfg.data, source=str(SHARED_DATA / "cifar10-jpeg75.tar.gz")))
        cfg = apply_overrides(cfg, [f"optim.batch_size={args.batch}",
                                    f"data.train_subset={args.batch * (args.steps + 10)}",
                                    "data.eval_subset=0", "run.dynamics_probe=0", "optim.epochs=5"])
        with tempfile.TemporaryDirectory() as tmp:
            trainer = Trainer(cfg, tmp, device)
            trainer.run(stop_after_steps=3)  # warm-up
            sync(device)
            step_seconds = median(timed(
                lambda: trainer.run(stop_after_steps=trainer.global_step + 1), device,
                args.steps, warmup=0))
            unit = bare_pass_seconds(trainer.model, args.batch, device)
        passes = trainer.recipe.passes_per_step()
        ratio = step_seconds / (passes * unit)
        rows.append({"recipe": name, "passes_per_step": passes, "step_seconds": step_seconds,
                     "bare_pass_seconds": unit, "ratio": ratio, "model": cfg.model.name,
                     "model_kwargs": cfg.model.kwargs, "params": repr(cfg.params)})
        lines.append(f"| {name} | {passes} | {step_seconds:.4f} | {unit:.4f} | {ratio:.3f} |")
        print(lines[-1], flush=True)
    lines.append(f"\nSmoke-preset models (tiny-cnn width 48; batch norm off for jem and eb-jdat as in "
                 f"their presets), batch {args.batch}, median over {args.steps} single steps after 3 "
                 f"warm-up steps; the bare pass is model forward + cross-entropy + backward on one "
                 f"batch. Target ratio <= 1.15.")
    write_report("recipe_overhead", {"device": str(device), "rows": rows}, "\n".join(lines))


if __name__ == "__main__":
    main()
