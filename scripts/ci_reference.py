"""Make tests/reference/ci: the CI reproduction's records and tables, and one tolerance per metric
justified by measured run-to-run spread.

The reproduction (`energybench reproduce --preset ci`) is deterministic on one machine. What can
move its numbers is floating-point order on another machine, so it is re-run under perturbations
that change only that: the same settings again (must be bit-identical), one thread instead of two,
and AVX2 kernels instead of AVX-512 (ATen, oneDNN and MKL). Each metric's tolerance is 3x the
largest deviation from the baseline seen across those runs, and never below one test image (1/n)
for accuracies or 0.5% for scores.

    python scripts/ci_reference.py [--data ../shared/data/cifar10-jpeg75.tar.gz]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REFERENCE = REPO / "tests" / "reference" / "ci"
VARIANTS = {
    "baseline": {},
    "baseline-again": {},
    "one-thread": {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
}
FACTOR, SCORE_FLOOR = 3.0, 0.005


def run_variant(name: str, env_extra: dict, data: str, work: Path) -> Path:
    out = work / name / "out"
    env = {**os.environ, **env_extra, "ENERGYBENCH_PROGRESS": "0"}
    cmd = [sys.executable, "-m", "energybench", "reproduce", "--preset", "ci", "--data", data,
           "--out", str(out), "--runs", str(work / name / "runs"), "--device", "cpu"]
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
    print(f"{name}: {time.perf_counter() - start:.0f} s", flush=True)
    return out


def values(out: Path) -> dict:
    result = {}
    for f in sorted((out / "records").rglob("*.json")):
        r = json.loads(f.read_text())
        result[f"{f.parent.name}/{r['metric']}"] = {"value": r["value"], "n": r["n"], "unit": r["unit"]}
    return result


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "cifar10-jpeg75.tar.gz"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ci-reference-"))
    outs = {name: run_variant(name, env, args.data, work) for name, env in VARIANTS.items()}
    base = values(outs["baseline"])
    spread: dict[str, dict] = {}
    for name, out in outs.items():
        other = values(out)
        assert set(other) == set(base), f"{name} produced different records"
        for key, v in base.items():
            metric = key.split("/")[1]
            dev = abs(other[key]["value"] - v["value"])
            rel = dev / abs(v["value"]) if v["value"] else dev
            s = spread.setdefault(metric, {"max_abs": 0.0, "max_rel": 0.0, "by_variant": {}, "n": v["n"],
                                           "unit": v["unit"]})
            s["max_abs"], s["max_rel"] = max(s["max_abs"], dev), max(s["max_rel"], rel)
            s["by_variant"][name] = max(s["by_variant"].get(name, 0.0), dev)
    tolerances = {}
    for metric, s in sorted(spread.items()):
        if s["unit"] == "fraction":
            floor = 1 / s["n"]
            tol = max(FACTOR * s["max_abs"], floor)
            tolerances[metric] = {"abs": tol, "why": (
                f"largest deviation across re-runs {s['max_abs']:.4f} "
                f"({', '.join(f'{k} {v:.4f}' for k, v in s['by_variant'].items())}); "
                f"tolerance max({FACTOR:g} x that, one image of n = {s['n']}) = {tol:.4f}")}
        else:
            tol = max(FACTOR * s["max_rel"], SCORE_FLOOR)
            tolerances[metric] = {"rel": tol, "why": (
                f"largest relative deviation across re-runs {s['max_rel']:.2e} "
                f"({', '.join(f'{k} {v:.3g}' for k, v in s['by_variant'].items())} absolute); "
                f"tolerance max({FACTOR:g} x that, {SCORE_FLOOR:g}) = {tol:.3g} relative")}
    if REFERENCE.exists():
        shutil.rmtree(REFERENCE)
    shutil.copytree(outs["baseline"], REFERENCE)
    (REFERENCE / "tolerances.json").write_text(json.dumps({
        "made_by": "python scripts/ci_reference.py", "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "variants": VARIANTS, "factor": FACTOR, "spread": spread, "tolerances": tolerances}, indent=1) + "\n")
    print(json.dumps(tolerances, indent=1))


if __name__ == "__main__":
    main()
