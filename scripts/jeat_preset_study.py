"""Evidence for the `jeat` paper preset: which optimiser / sampler setting trains without roll-backs.

The JEAT paper gives no optimiser, sampler or buffer values. This study trains JEAT (Algorithm 1)
under candidate settings on the same residual network and data, with the divergence guard on, and
records every roll-back, the p(x) gap and energies per epoch, clean accuracy and PGD-20 at the end:

  A  "sgd-bn-uniform": the former preset: batch norm, ReLU, SGD 0.1 (momentum 0.9, wd 5e-4), no
     warm-up, SGLD chains reinitialised from U(0, 1) (as Algorithm 1 writes)
  B  "jem-uniform": JEM's published stabilisers: no batch norm, leaky ReLU 0.2, [-1, 1] inputs,
     PyTorch default init, Adam 1e-4 with warm-up, chains from U(0, 1)
  C  "jem-gaussian": B with chains from the class-conditional Gaussian (JEM++ / EB-JDAT)

All use the paper's energy FGSM (eps = step = 8/255) and JEM's SGLD (20 steps of 0.25 with noise
0.005 in pixel units, buffer 10,000, reinit 0.05). Scale: what a 2-core CPU finishes in minutes
(WRN-10-2, 5,000 images, 4 epochs, batch 64); on a GPU pass --model wrn-28-10 --images 50000.

    python scripts/jeat_preset_study.py [--data ../shared/data/cifar10-jpeg75.tar.gz] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
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
from energybench.training.recipes import preset_config  # noqa: E402
from energybench.training.run import train

JEM_STABILISERS = ["model.batch_norm=false", "model.act=leaky_relu", "model.normalize=pm1",
                   "model.init=default", "optim.name=adam", "optim.lr=1e-4", "optim.weight_decay=0"]
SETTINGS = {
    "sgd-bn-uniform": ["model.batch_norm=true", "model.act=relu", "model.normalize=cifar", "model.init=kaiming",
                       "optim.name=sgd", "optim.lr=0.1", "optim.weight_decay=5e-4", "optim.warmup_steps=0",
                       "recipe.sgld_init=uniform"],
    "jem-uniform": [*JEM_STABILISERS, "recipe.sgld_init=uniform"],
    "jem-gaussian": [*JEM_STABILISERS, "recipe.sgld_init=class-gaussian"],
}


def run_setting(name: str, extra: list[str], args, runs: Path) -> dict:
    cfg = preset_config("jeat", "paper")
    cfg = replace(cfg, data=replace(cfg.data, source=args.data))
    depth, width = args.model
    sets = ["model.name=wrn", f"model.depth={depth}", f"model.width={width}",
            f"data.train_subset={args.images}", f"optim.epochs={args.epochs}", "optim.batch_size=64",
            "optim.schedule=constant", f"optim.warmup_steps={args.warmup}", "data.holdout=0",
            "data.eval_subset=500", "run.robust_eval=200", "run.dynamics_probe=64",
            "run.checkpoint_every_steps=50", *extra]
    cfg = apply_overrides(cfg, sets)
    out = runs / name
    if out.exists() and not (out / "last.pt").exists():
        shutil.rmtree(out)
    start = time.perf_counter()
    result = {"setting": name, "overrides": sets}
    try:
        ckpt = train(cfg, out, torch.device("cpu"), resume=(out / "last.pt").exists())
        result["finished"] = True
    except UserError as exc:
        result.update(finished=False, stopped=str(exc))
        ckpt = out / "last.pt"
    result["seconds"] = time.perf_counter() - start
    events = out / "events.jsonl"
    result["rollbacks"] = [json.loads(x) for x in events.read_text().splitlines()] if events.exists() else []
    log = out / "log.jsonl"
    result["epochs"] = [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
    if result["finished"]:
        records = evaluate(ckpt, ["clean", "pgd20"], n=500, out_dir=out / "eval", log=lambda m: None)
        result["eval"] = {r["metric"]: {"value": r["value"], "stderr": r["stderr"], "n": r["n"]} for r in records}
    return result


def write_report(results: list[dict], args, out: Path) -> None:
    depth, width = args.model
    lines = ["# Which setting trains JEAT? (evidence for the `jeat` paper preset)", "",
             f"Command: `python scripts/jeat_preset_study.py --images {args.images} --epochs {args.epochs}"
             f" --model {depth} {width}`. Device: CPU (2 cores). Data: CIFAR-10 (JPEG q75 copy), "
             f"{args.images:,} class-balanced training images; clean accuracy and PGD-20 (8/255) on the "
             "first 500 test images of the same copy. WRN-"
             f"{depth}-{width}, batch 64, {args.epochs} epochs, constant learning rate after "
             f"{args.warmup} warm-up steps, JEAT Algorithm 1 with JEM's SGLD (20 steps of 0.25, noise "
             "0.005, buffer 10,000, reinit 0.05), divergence guard on (roll-back, learning rate x0.5, "
             "at most 3 times).", "",
             "| setting | finished | roll-backs | final p(x) gap E(x_adv) - E(x_sgld) | clean | PGD-20 | minutes |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in results:
        last = r["epochs"][-1] if r["epochs"] else {}
        ev = r.get("eval", {})
        pct = lambda m: f"{100 * ev[m]['value']:.1f} ± {100 * ev[m]['stderr']:.1f}" if m in ev else "–"  # noqa: E731
        gap = last.get("gap_px")
        lines.append(f"| {r['setting']} | {'yes' if r['finished'] else 'no: ' + r.get('stopped', '')[:80]} | "
                     f"{len(r['rollbacks'])} | {gap if gap is None else format(gap, '.3g')} | {pct('clean')} | "
                     f"{pct('pgd20')} | {r['seconds'] / 60:.1f} |")
    lines += ["", "Per epoch (p(x) gap, E(x_adv), E(x_sgld), eval accuracy):", ""]
    for r in results:
        lines.append(f"- {r['setting']}: " + "; ".join(
            f"epoch {e['epoch']}: gap {e.get('gap_px', float('nan')):.3g}, E_adv {e.get('E_adv', float('nan')):.3g}, "
            f"E_sgld {e.get('E_sgld', float('nan')):.3g}, acc {e.get('eval_acc', float('nan')):.3f}"
            for e in r["epochs"]))
        for ev in r["rollbacks"]:
            lines.append(f"  - roll-back at {ev.get('at')}")
    (out / "README.md").write_text("\n".join(lines) + "\n")
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "cifar10-jpeg75.tar.gz"))
    parser.add_argument("--out", type=Path, default=REPO / "reports" / "jeat-preset-study")
    parser.add_argument("--runs", type=Path, default=REPO / "runs" / "jeat-preset-study")
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--model", type=int, nargs=2, default=(10, 2), metavar=("DEPTH", "WIDTH"))
    parser.add_argument("--only", nargs="*", default=list(SETTINGS))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = [run_setting(name, SETTINGS[name], args, args.runs) for name in args.only]
    write_report(results, args, args.out)
    print((args.out / "README.md").read_text())


if __name__ == "__main__":
    main()
