"""CPU smoke study: every recipe's smoke preset on the same data budget (class-balanced subset of
the CIFAR-10 JPEG copy, same epochs), evaluated with clean / PGD-20 / energy PGD-20 accuracy on
the first test images of the same copy, plus the per-epoch energy dynamics of the last epoch.
Writes reports/smoke-study/{README.md, results.json} and the runs under runs/smoke-study/.
Re-running resumes unfinished runs and reuses finished evaluations.

    python scripts/smoke_study.py [--images 10000] [--epochs 8] [--n 500] [--figures]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from energybench.core.errors import UserError  # noqa: E402
from energybench.evaluation.runner import evaluate  # noqa: E402
from energybench.training.config import apply_overrides  # noqa: E402
from energybench.training.recipes import preset_config, recipe_names  # noqa: E402
from energybench.training.run import train

DATA = REPO.parent / "shared" / "data" / "cifar10-jpeg75.tar.gz"
ADVERSARIAL = ["pgd-at", "trades", "prejeat", "jeat", "eb-jdat"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--figures", action="store_true",
                        help="also draw each model's sample gallery and landscape figures into "
                             "reports/smoke-study/<recipe>/ (after training)")
    args = parser.parse_args()
    runs, out = REPO / "runs" / "smoke-study", REPO / "reports" / "smoke-study"
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device("cpu")
    results = {}
    for name in recipe_names():
        cfg = preset_config(name, "smoke")
        cfg = replace(cfg, data=replace(cfg.data, source=str(DATA)))
        cfg = apply_overrides(cfg, [f"data.train_subset={args.images}", f"optim.epochs={args.epochs}"])
        run = runs / name
        start = time.perf_counter()
        try:
            ckpt = train(cfg, run, device, resume=(run / "last.pt").exists())
        except UserError as exc:  # e.g. the divergence guard gave up: report it, go on
            results[name] = {"failed": str(exc)}
            print(f"{name}: FAILED: {exc}", flush=True)
            continue
        train_seconds = time.perf_counter() - start
        records = evaluate(ckpt, ["clean", "pgd20", "pgd20-energy"], n=args.n, out_dir=run / "eval",
                           device=device, log=lambda m: print(m, flush=True))
        log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
        results[name] = {
            "metrics": {r["metric"]: {"value": r["value"], "stderr": r["stderr"], "n": r["n"]} for r in records},
            "last_epoch": log[-1], "train_seconds_this_call": train_seconds,
            "model": cfg.model.name, "model_kwargs": cfg.model.kwargs, "batch_size": cfg.optim.batch_size,
            "params": {k: v for k, v in vars(cfg.params).items()},
        }
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    if args.figures:
        figures(results, runs, out, device)
    write_markdown(results, args, out / "README.md")


FIGURE_METRICS = ["energy-hist", "energy-contour", "energy-dynamics", "memorization", "jfs", "mfs"]
GALLERY = {"n_per_class": 10, "steps": 100, "init": "class-gaussian", "mode": "joint"}


def figures(results, runs, out, device):
    """Per recipe: a class-conditional sample gallery (eq. 17 from the class Gaussian), the energy
    histogram, contour and dynamics figures, the memorization grid and the Fisher scores."""
    import shutil

    from energybench.workflows.sample import sample_model

    for name, r in results.items():
        if "failed" in r:
            continue
        ckpt = runs / name / "last.pt"
        dest = out / name
        sample_model(ckpt, GALLERY["n_per_class"], GALLERY["mode"], GALLERY["init"], GALLERY["steps"],
                     0.25, 0.005, None, dest / "samples", device, 0)
        (dest / "samples" / "samples.npz").unlink()  # keep the PNGs in the report, not the arrays
        records = evaluate(ckpt, FIGURE_METRICS, n=200, out_dir=runs / name / "eval-figures",
                           device=device, overrides={"n_per_class": 5, "steps": 100},
                           log=lambda m: print(m, flush=True))
        for record in records:
            r.setdefault("figures", {})[record["metric"]] = {
                "value": record["value"], "extra": {k: v for k, v in record["extra"].items()
                                                    if not isinstance(v, (list, dict))}}
        for png in (runs / name / "eval-figures").glob("*.png"):
            shutil.copy(png, dest / png.name)
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")


def pct(m):
    return f"{100 * m['value']:.1f} ± {100 * m['stderr']:.1f}"


def write_markdown(results, args, path):
    lines = [
        "# CPU smoke study: all recipes at the same small budget",
        "",
        f"Command: `python scripts/smoke_study.py --images {args.images} --epochs {args.epochs} --n {args.n}"
        f"{' --figures' if args.figures else ''}`",
        "",
        f"Scale: each recipe's `smoke` preset (tiny-cnn, width 48, ~0.2M parameters), trained for "
        f"{args.epochs} epochs on a class-balanced {args.images:,}-image subset of **CIFAR-10 (JPEG q75 "
        f"copy)**, CPU, seed 0, one run per recipe. Evaluated on the first {args.n} test images of the "
        f"same copy; PGD-20 at eps 8/255, step 2/255, random start; ± is the binomial standard error. "
        f"These are smoke-scale numbers, not the papers' WRN-28-10 setting.",
        "",
        "| recipe | clean % | PGD-20 % | energy PGD-20 % | ΔxE(x,y) | ΔθE(x,y) | E(x,y) clean |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        if "failed" in r:
            lines.append(f"| {name} | failed: {r['failed']} | | | | | |")
            continue
        m, e = r["metrics"], r["last_epoch"]
        lines.append(f"| {name} | {pct(m['clean'])} | {pct(m['pgd20'])} | {pct(m['pgd20-energy'])} | "
                     f"{e.get('dxE_joint', float('nan')):.3f} | {e.get('dthetaE_joint', float('nan')):.3f} | "
                     f"{e.get('E_joint_clean', float('nan')):.3f} |")
    lines += ["", "ΔxE, ΔθE: JEAT eq. 15 on a fixed 128-image training probe at the last epoch "
              "(energy PGD-10 at 8/255; see energybench/training/dynamics.py).", "", "## Claims checked", ""]
    normal = results["normal"]["metrics"]
    for name in ADVERSARIAL:
        if "failed" in results[name]:
            lines.append(f"- {name}: training failed, no measurement.")
            continue
        m = results[name]["metrics"]
        gain = m["pgd20"]["value"] - normal["pgd20"]["value"]
        se = (m["pgd20"]["stderr"] ** 2 + normal["pgd20"]["stderr"] ** 2) ** 0.5
        verdict = "holds" if gain > 2 * se else "does NOT hold"
        lines.append(f"- {name} gains PGD-20 robustness over normal: {100 * gain:+.1f} points "
                     f"(2 SE = {200 * se:.1f}): **{verdict}**.")
    diff = normal["pgd20-energy"]["value"] - normal["pgd20"]["value"]
    lines.append(f"- Energy attack about as strong as the CE attack on the normal classifier (JEAT "
                 f"Table 1): energy {100 * normal['pgd20-energy']['value']:.1f}% vs CE "
                 f"{100 * normal['pgd20']['value']:.1f}% ({100 * diff:+.1f} points): "
                 f"**{'holds' if abs(diff) <= 0.02 else 'does NOT hold'}** (within 2 points).")
    if any("figures" in r for r in results.values()):
        lines += ["", "## Figures and generative scores (per recipe folder)", "",
                  "| recipe | JFS | MFS | mean best SSIM to train | E gap adv-clean | E gap gen-clean | contour rise (8/255) |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for name, r in results.items():
            f = r.get("figures")
            if not f:
                continue
            lines.append(
                f"| [{name}]({name}/) | {f['jfs']['value']:.3g} | {f['mfs']['value']:.3g} | "
                f"{f['memorization']['value']:.3f} | {f['energy-hist']['extra']['gap_adv_clean']:.2f} | "
                f"{f['energy-hist']['extra']['gap_generated_clean']:.2f} | {f['energy-contour']['value']:.3f} |")
        lines += ["", "Each folder holds `samples/grid.png` (10 samples per class by SGLD on E(x, y), "
                  "100 steps of 0.25 / noise 0.005 from the class-conditional Gaussian), "
                  "`energy-hist.png`, `energy-contour.png`, `energy-dynamics.png` and "
                  "`memorization.png` (sample | its 10 nearest training images by SSIM). Fisher scores "
                  "on 200 test images, 10 probes, pixel units; IS/FID are not computed here: no "
                  "Inception weights on this machine."]
    for name in ("jeat", "eb-jdat"):
        if "failed" in results[name] or "failed" in results["jem"]:
            continue
        m = results[name]["metrics"]
        lines.append(f"- {name} vs jem robustness: {100 * m['pgd20']['value']:.1f}% vs "
                     f"{100 * results['jem']['metrics']['pgd20']['value']:.1f}% PGD-20.")
    path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
