"""Evidence for `run.inner_precision`: train with the step under bfloat16 autocast and the
training-time attacks / SGLD either in float32 or in bfloat16, against a float32 reference.

On CUDA, `run.amp` puts each training step under bfloat16 autocast. Whether the attack and SGLD
loops inside the step inherit it is `run.inner_precision`. bfloat16 rounds the same way on any
device, so when no GPU is lent this study emulates the CUDA step with CPU bfloat16 autocast (it
replaces the trainer's autocast for this process only) and says so in its report.

Per recipe and setting: clean accuracy and PGD-20 (8/255, float32 evaluation) on 500 test images,
and for SGLD recipes the last epoch's E(x_sgld) and p(x) gap; plus, on the float32-trained model,
the energy SGLD reaches in 100 steps from the class-conditional Gaussian with the loop in float32
and in bfloat16.

    python scripts/precision_study.py [--data ../shared/data/cifar10-jpeg75.tar.gz] [--out DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import energybench.training.trainer as trainer_module  # noqa: E402
from energybench.training.run import train  # noqa: E402
from energybench.evaluation.runner import evaluate  # noqa: E402
from energybench.training.config import apply_overrides  # noqa: E402
from energybench.training.recipes import preset_config  # noqa: E402

SETTINGS = {"float32": (False, "float32"), "bf16-step, float32 inner": (True, "float32"),
            "bf16-step, bf16 inner": (True, "bfloat16")}


def cpu_bf16_autocast(device, enabled):
    return torch.autocast("cpu", dtype=torch.bfloat16) if enabled else contextlib.nullcontext()


def sgld_energy(ckpt: Path, precision: str, device) -> float:
    """Mean E(x, y) after 100 SGLD steps (eq. 17) from the class Gaussian, loop in `precision`."""
    from energybench.core.runtime import inner_loop_precision
    from energybench.energy.energies import joint_energy
    from energybench.energy.generation import GenerationConfig, generate_for
    from energybench.handles.checkpoint import load_model

    loaded = load_model(ckpt, device)
    cfg = GenerationConfig(n_per_class=20, steps=100)
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bfloat16"
                else contextlib.nullcontext())
    with autocast, inner_loop_precision(precision):
        samples = generate_for(loaded, cfg, device)
    with torch.no_grad():
        return float(joint_energy(loaded.model(samples.images), samples.labels).mean())


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "cifar10-jpeg75.tar.gz"))
    parser.add_argument("--out", type=Path, default=REPO / "reports" / "precision-study")
    parser.add_argument("--runs", type=Path, default=REPO / "runs" / "precision-study")
    parser.add_argument("--recipes", nargs="*", default=["pgd-at", "jem"])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu":
        trainer_module.autocast = cpu_bf16_autocast  # emulate the CUDA bfloat16 step on the CPU
    results = []
    for recipe in args.recipes:
        for name, (amp, inner) in SETTINGS.items():
            cfg = preset_config(recipe, "smoke")
            cfg = replace(cfg, data=replace(cfg.data, source=args.data))
            cfg = apply_overrides(cfg, [f"data.train_subset={args.images}", f"optim.epochs={args.epochs}",
                                        f"run.amp={amp}", f"run.inner_precision={inner}",
                                        "data.eval_subset=0", "run.dynamics_probe=0"])
            out = args.runs / recipe / name.replace(" ", "").replace(",", "-")
            start = time.perf_counter()
            ckpt = train(cfg, out, device, resume=(out / "last.pt").exists())
            seconds = time.perf_counter() - start
            records = {r["metric"]: r for r in evaluate(ckpt, ["clean", "pgd20"], n=500, out_dir=out / "eval",
                                                           log=lambda m: None)}
            last = json.loads((out / "log.jsonl").read_text().splitlines()[-1])
            row = {"recipe": recipe, "setting": name, "seconds": seconds,
                   "clean": records["clean"]["value"], "pgd20": records["pgd20"]["value"],
                   "stderr_pgd20": records["pgd20"]["stderr"], "E_sgld": last.get("E_sgld"),
                   "gap_px": last.get("gap_px")}
            if name == "float32":
                row["sgld_energy"] = {p: sgld_energy(ckpt, p, device) for p in ("float32", "bfloat16")}
            results.append(row)
            print(row, flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    lines = ["# Precision of training-time attacks and SGLD (`run.inner_precision`)", "",
             f"Command: `python scripts/precision_study.py --images {args.images} --epochs {args.epochs}`. "
             + ("No GPU was lent: the CUDA bfloat16 training step is emulated with CPU bfloat16 autocast "
                "(same rounding). " if device.type == "cpu" else f"Device: {torch.cuda.get_device_name()}. ")
             + "Each recipe's smoke preset (tiny-cnn) on "
             f"{args.images:,} images of CIFAR-10 (JPEG q75 copy), {args.epochs} epochs; clean accuracy and "
             "PGD-20 (8/255, float32) on the first 500 test images of the same copy (± binomial standard "
             "error).", "",
             "| recipe | setting | clean | PGD-20 | last epoch E(x_sgld) | p(x) gap | minutes |",
             "|---|---|---:|---:|---:|---:|---:|"]
    fmt = lambda v: "–" if v is None else f"{v:.3g}"  # noqa: E731
    for r in results:
        lines.append(f"| {r['recipe']} | {r['setting']} | {100 * r['clean']:.1f} | "
                     f"{100 * r['pgd20']:.1f} ± {100 * r['stderr_pgd20']:.1f} | {fmt(r['E_sgld'])} | "
                     f"{fmt(r['gap_px'])} | {r['seconds'] / 60:.1f} |")
    lines += ["", "Energy E(x, y) reached by 100 SGLD steps (eq. 17) from the class-conditional Gaussian on "
              "the float32-trained model, 20 samples per class, loop in float32 vs bfloat16:", ""]
    for r in results:
        if "sgld_energy" in r:
            e = r["sgld_energy"]
            lines.append(f"- {r['recipe']}: float32 {e['float32']:.4g}, bfloat16 {e['bfloat16']:.4g}")
    (args.out / "README.md").write_text("\n".join(lines) + "\n")
    print((args.out / "README.md").read_text())


if __name__ == "__main__":
    main()
