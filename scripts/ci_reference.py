"""Make tests/reference/ci: the CI reproduction's records and tables, and one tolerance per metric
justified by measured run-to-run spread.

The reproduction (`energybench reproduce --preset ci`) is deterministic on one machine. What can
move its numbers is floating-point order on another machine, so it is re-run under perturbations
that change only that: the same settings again (must be bit-identical), one thread instead of two,
and AVX2 kernels instead of AVX-512 (ATen, oneDNN and MKL). Float order moves a whole training
trajectory, not one metric, so the spread is pooled by kind: the largest absolute deviation of any
accuracy, the largest relative deviation of any score. Each metric's tolerance is 3x its kind's
spread, and never below one test image (1/n) for accuracies or 0.5% for scores. A kind's spread is
the largest of these re-runs and of every earlier derivation (kept in tolerances.json): a deviation
seen once on this pipeline can be seen again on another machine.

    python scripts/ci_reference.py [--data ../shared/data/cifar10-jpeg75.tar.gz] [--work DIR]

(--work reuses the variant runs already in DIR.)
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
    if (out / "status.json").exists():
        return out
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
        purified = "+purified" if (r.get("identity") or {}).get("purification") else ""
        result[f"{f.parent.name}{purified}/{r['metric']}"] = {"value": r["value"], "n": r["n"], "unit": r["unit"]}
    return result


def earlier_spreads(path: Path) -> dict:
    """The largest pooled spreads (accuracy: absolute, score: relative) that earlier derivations
    recorded in tolerances.json, and the date of the first of them. A tolerance never shrinks below
    a deviation seen once: another machine can show it again."""
    if not path.exists():
        return {"pooled": {}, "since": None}
    old = json.loads(path.read_text())
    if "pooled_spread" in old:
        pooled = {kind: max(old["pooled_spread"]["now"].get(kind, 0.0), old["pooled_spread"]["earlier"].get(kind, 0.0))
                  for kind in ("fraction", "score")}
        return {"pooled": pooled, "since": old["pooled_spread"]["earlier_since"] or old["created"]}
    spread = old.get("spread", {})  # a reference made before pooled spreads were kept
    return {"pooled": {"fraction": max((s["max_abs"] for s in spread.values() if s["unit"] == "fraction"), default=0.0),
                       "score": max((s["max_rel"] for s in spread.values() if s["unit"] != "fraction"), default=0.0)},
            "since": old.get("created")}


def render_tables(folder: Path) -> None:
    """(Re-)render the tables of a reproduction folder from its records with the current code."""
    sys.path.insert(0, str(REPO))
    from energybench.reporting.cells import collect_records
    from energybench.reporting.report import write_tables

    write_tables(collect_records([folder / "records"]), folder / "tables")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "cifar10-jpeg75.tar.gz"))
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="ci-reference-"))
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
    kinds = {"fraction": [m for m, s in spread.items() if s["unit"] == "fraction"]}
    kinds["score"] = [m for m in spread if m not in kinds["fraction"]]
    now = {"fraction": max((spread[m]["max_abs"] for m in kinds["fraction"]), default=0.0),
           "score": max((spread[m]["max_rel"] for m in kinds["score"]), default=0.0)}
    earlier = earlier_spreads(REFERENCE / "tolerances.json")
    pooled = {kind: max(now[kind], earlier["pooled"].get(kind, 0.0)) for kind in now}
    seen = {kind: (f"{now[kind]:.4g} in these re-runs, {earlier['pooled'].get(kind, 0.0):.4g} in earlier "
                   f"derivations (since {earlier['since']})" if earlier["since"] else f"{now[kind]:.4g} in these re-runs")
            for kind in now}
    tolerances = {}
    for metric, s in sorted(spread.items()):
        if metric in kinds["fraction"]:
            tol = max(FACTOR * pooled["fraction"], 1 / s["n"])
            tolerances[metric] = {"abs": tol, "why": (
                f"largest deviation of any accuracy {pooled['fraction']:.4f} ({seen['fraction']}; this metric here: "
                f"{', '.join(f'{k} {v:.4f}' for k, v in s['by_variant'].items())}); tolerance "
                f"max({FACTOR:g} x {pooled['fraction']:.4f}, one image of n = {s['n']}) = {tol:.4f}")}
        else:
            tol = max(FACTOR * pooled["score"], SCORE_FLOOR)
            tolerances[metric] = {"rel": tol, "why": (
                f"largest relative deviation of any score {pooled['score']:.2e} ({seen['score']}; this "
                f"metric here, absolute: {', '.join(f'{k} {v:.3g}' for k, v in s['by_variant'].items())}); "
                f"tolerance max({FACTOR:g} x {pooled['score']:.2e}, {SCORE_FLOOR:g}) = {tol:.3g} relative")}
    if REFERENCE.exists():
        shutil.rmtree(REFERENCE)
    shutil.copytree(outs["baseline"], REFERENCE)
    render_tables(REFERENCE)
    (REFERENCE / "tolerances.json").write_text(json.dumps({
        "made_by": "python scripts/ci_reference.py", "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "variants": VARIANTS, "factor": FACTOR, "spread": spread,
        "pooled_spread": {"now": now, "earlier": earlier["pooled"], "earlier_since": earlier["since"], "used": pooled},
        "tolerances": tolerances}, indent=1) + "\n")
    lines = ["# CI regression reference", "",
             f"The records and tables of `energybench reproduce --preset ci` "
             f"({len(list((REFERENCE / 'records').iterdir()))} tiny-cnn models, 1,000 "
             "training images of CIFAR-10 (JPEG q75 copy), 2 epochs, deterministic, CPU) and one tolerance "
             "per metric. Made by `python scripts/ci_reference.py`; checked by "
             "`tests/integration/test_table_regression.py`.", "",
             "| metric | tolerance | why |", "|---|---|---|"]
    lines += [f"| {m} | {'±' + format(t['abs'], '.4f') if 'abs' in t else format(t['rel'], '.3g') + ' relative'} "
              f"| {t['why']} |" for m, t in tolerances.items()]
    (REFERENCE / "README.md").write_text("\n".join(lines + ["", "Tables: [tables/](tables/)."]) + "\n")
    print(json.dumps(tolerances, indent=1))


if __name__ == "__main__":
    main()
