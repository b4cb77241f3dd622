"""How often the always-on attack-failure checks fire on honest models, and whether they still
fire on constructed failures: the study behind `incomplete_optimisation`'s evidence rule and the
`gradient_direction` check (energybench.attacks.diagnostics).

1. Calibration (images the study does not judge): PGD-20, L-inf and L2, on test images 1,017 to
   1,017 + CALIBRATION of the CIFAR-10 JPEG q75 copy, on every shipped smoke checkpoint: the
   per-image rate of images still improving at the end of the attack. HONEST_RISING_RATE must
   bound it.
2. False positives: every shipped checkpoint, 10 seeds (each a random draw of n images of the
   1,017 exact-pixel test images, and its own random starts), n = 32, 64, 128, L-inf and L2:
   how many records raise each check (target 0), and how many the old share rule (one image in
   more than 1% of the images) would have raised.
3. Constructed failures, on the pgd-at smoke checkpoint with the same seeds, sizes and norms:
   PGD whose step is eps/80 (20 steps cover a quarter of the budget: incomplete optimisation)
   and a model whose input gradient is replaced by noise of the same scale (gradient direction).

    python -m benchmarks.diagnostics_false_positives [--device auto] [--seeds 10]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks._common import REPO, SHARED_DATA, write_report

SIZES = (32, 64, 128)
NORMS = ("Linf", "L2")
CALIBRATION = 1024
OLD_SHARE = 0.01  # the rule replaced: raised when one image or more exceeded 1% of the images


def _split(path: Path, split: str):
    from energybench.data import load_split

    return load_split(path, split)


def _draw(data, n: int, seed: int):
    from energybench.data import in_memory

    index = torch.from_numpy(np.random.default_rng(seed).permutation(len(data))[:n])
    return in_memory(data.images[index], data.labels[index], data.classes, label=f"draw {seed}")


def _run(model, data, cfg, seed: int, device):
    from energybench.metrics import EvalContext
    from energybench.metrics.robustness import run_pgd

    ctx = EvalContext(model, data, device, 128, seed, Path("."), stem="study")
    return run_pgd(ctx, cfg, "study")


def _still_improving(run) -> tuple[int, int]:
    check = next(c for c in run.checks if c.name == "incomplete_optimisation")
    return check.evidence.get("still_improving", 0), run.n


def _flags(run) -> dict:
    out = {c.name: c.flag for c in run.checks}
    check = next(c for c in run.checks if c.name == "incomplete_optimisation")
    count = check.evidence.get("still_improving", 0)
    out["old_share_rule"] = count >= 1 and count / run.n > OLD_SHARE if check.flag is not None else None
    return out


def main():
    from energybench.attacks.broken_models import NoiseGradient
    from energybench.attacks.diagnostics import HONEST_RISING_RATE
    from energybench.attacks.pgd import DEFAULT_EPS, PGDConfig
    from energybench.core.progress import progress
    from energybench.core.runtime import exact_float32, resolve_device
    from energybench.handles.checkpoint import load_model

    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seeds", type=int, default=10)
    args = parser.parse_args()
    device = resolve_device(args.device)
    start = time.perf_counter()
    checkpoints = sorted((REPO / "checkpoints").glob("*-smoke.pt"))
    exact = _split(SHARED_DATA / "cifar10-test-exact-1017.npz", "test")
    jpeg = _split(SHARED_DATA / "cifar10-jpeg75.tar.gz", "test").subset(CALIBRATION, offset=1017)
    models = {p.stem.removesuffix("-smoke"): load_model(p, device).model for p in checkpoints}
    calibration, fp, constructed = [], [], []
    with exact_float32():
        for name, model in progress(list(models.items()), desc="calibration"):
            for norm in NORMS:
                count, n = _still_improving(_run(model, jpeg, PGDConfig(norm=norm), 0, device))
                calibration.append({"model": name, "norm": norm, "images": n, "still_improving": count})
        for name, model in progress(list(models.items()), desc="false positives"):
            for norm in NORMS:
                for n in SIZES:
                    for seed in range(args.seeds):
                        run = _run(model, _draw(exact, n, seed), PGDConfig(norm=norm), seed, device)
                        fp.append({"model": name, "norm": norm, "n": n, "seed": seed, **_flags(run)})
        base = models["pgd-at"]
        cases = {"step eps/80": lambda norm: (base, PGDConfig(norm=norm, step_size=DEFAULT_EPS[norm] / 80)),
                 "noise gradient": lambda norm: (NoiseGradient(base), PGDConfig(norm=norm))}
        for case, make in progress(list(cases.items()), desc="constructed failures"):
            for norm in NORMS:
                model, cfg = make(norm)
                for n in SIZES:
                    for seed in range(args.seeds):
                        run = _run(model, _draw(exact, n, seed), cfg, seed, device)
                        constructed.append({"case": case, "norm": norm, "n": n, "seed": seed, **_flags(run)})
    seconds = time.perf_counter() - start

    checks = ["randomized_forward", "probability_output", "unavailable_gradients", "incomplete_optimisation",
              "gradient_direction", "old_share_rule"]
    lines = ["## 1. Calibration: images still improving after honest PGD-20 "
             f"(JPEG q75 copy, test images 1,017-{1017 + CALIBRATION - 1}, seed 0)", "",
             "| model | L-inf | L2 |", "|---|---:|---:|"]
    worst = 0.0
    for name in models:
        cells = []
        for norm in NORMS:
            row = next(r for r in calibration if r["model"] == name and r["norm"] == norm)
            rate = row["still_improving"] / row["images"]
            worst = max(worst, rate)
            cells.append(f"{row['still_improving']} of {row['images']} ({100 * rate:.2f}%)")
        lines.append(f"| {name} | {' | '.join(cells)} |")
    pooled = sum(r["still_improving"] for r in calibration) / sum(r["images"] for r in calibration)
    lines += ["", f"Pooled rate {100 * pooled:.3f}%, worst model and norm {100 * worst:.2f}%; "
              f"HONEST_RISING_RATE = {100 * HONEST_RISING_RATE:g}% "
              f"({'bounds' if HONEST_RISING_RATE >= worst else 'does NOT bound'} every calibration rate).", ""]

    def table(rows, key, title):
        out = [title, "", f"| {key} | norm | n | records | " + " | ".join(checks) + " |",
               "|---|---|---:|---:|" + "---:|" * len(checks)]
        groups = sorted({(r[key], r["norm"], r["n"]) for r in rows}, key=lambda g: (g[0], NORMS.index(g[1]), g[2]))
        for label, norm, n in groups:
            sel = [r for r in rows if (r[key], r["norm"], r["n"]) == (label, norm, n)]
            cells = []
            for check in checks:
                raised = sum(r[check] is True for r in sel)
                unassessed = sum(r[check] is None for r in sel)
                cells.append(f"{raised}" + (f" ({unassessed} n/a)" if unassessed else ""))
            out.append(f"| {label} | {norm} | {n} | {len(sel)} | " + " | ".join(cells) + " |")
        return out

    total = {check: sum(r[check] is True for r in fp) for check in checks}
    lines += table(fp, "model", f"## 2. Honest models: records raising each check ({args.seeds} seeds; "
                   "1,017 exact-pixel test images)")
    lines += ["", "Raised over all " + f"{len(fp)} honest records: " +
              ", ".join(f"{check} {total[check]}" for check in checks) + ".", ""]
    lines += table(constructed, "case", "## 3. Constructed failures (pgd-at smoke checkpoint): records raising each check")
    lines += ["", "A cell is the number of records that raised the check; '(k n/a)': records where it was not "
              "assessed (e.g. no image survived). old_share_rule: the rule replaced (raised when at least one image, "
              f"and more than {100 * OLD_SHARE:g}% of the images, was still improving).",
              "", f"Whole study: {seconds / 60:.1f} minutes."]
    write_report("diagnostics_false_positives",
                 {"device": str(device), "seeds": args.seeds, "honest_rising_rate": HONEST_RISING_RATE,
                  "calibration": calibration, "false_positives": fp, "constructed": constructed,
                  "raised_on_honest": total, "seconds": seconds}, "\n".join(lines))


if __name__ == "__main__":
    main()
