"""The GPU check: energybench's correctness, attack speed, training speed, AutoAttack and host
synchronisations on CUDA, in one command sized for a ten-minute loan of one GPU.

    bash scripts/gpu_check.sh [--tiny] [--device auto] [--out reports/gpu-check] [--data PATH]

Writes OUT/README.md (tables), OUT/results.json (every number) and the raw logs (OUT/parts.log,
OUT/tests.log). Each part runs in its own process under a share of a global deadline, so one
that fails or runs out of time leaves the others' results. Parts:

- checkpoints: `clean` and `pgd20` of every shipped checkpoints/*.pt on the device, on the first
  500 test images of the JPEG copy, against the committed CPU records image by image.
- pgd: WRN-28-10 PGD-20 (L-inf 8/255, step 2/255) on 2,000 images, float32 (IEEE, as records are
  made) and bfloat16 autocast: images/s, against torchattacks' PGD on the same model, batch and
  run, and against the forward+backward limit (20 input-gradient passes and a forward per image,
  timed as a bare loop).
- training: optimizer steps of every recipe's paper preset on WRN-28-10, batch 128: seconds per
  step beside `normal`, peak memory, non-finite losses, roll-backs.
- autoattack: standard AutoAttack on 500 test images of checkpoints/pgd-at-smoke.pt, against the
  CPU record in reports/gpu-check/cpu-reference/.
- syncs: device-to-host synchronisations per training step and per PGD step
  (torch.cuda.set_sync_debug_mode).
- tests: the synthetic test tier, whose `--device auto` commands then run on the GPU.

`--tiny` is the CPU dry run (tiny-cnn, a few images and steps, two checkpoints), tested in
tests/integration/test_gpu_check.py so that the one device call works the first time.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks._common import machine, median, sync  # noqa: E402
from benchmarks.pgd_throughput import DEPS as BENCH_DEPS, ensure_torchattacks  # noqa: E402
from energybench.api import evaluate  # noqa: E402
from energybench.attacks.pgd import AttackTrace, PGDConfig, pgd  # noqa: E402
from energybench.core.runtime import autocast, exact_float32, inner_loop_precision, resolve_device  # noqa: E402
from energybench.data import load_split  # noqa: E402
from energybench.models import create_model  # noqa: E402
from energybench.training.config import apply_overrides  # noqa: E402
from energybench.training.recipes import preset_config, recipe_names  # noqa: E402
from energybench.training.trainer import Trainer  # noqa: E402

PARTS = ("checkpoints", "pgd", "training", "autoattack", "syncs", "tests")
# each part's share of the deadline (seconds at full size); a part may use what earlier ones left
BUDGET = {"checkpoints": 50, "pgd": 90, "training": 190, "autoattack": 80, "syncs": 30, "tests": 160}
DEFAULT_DATA = REPO.parent / "shared" / "data" / "cifar10-jpeg75.tar.gz"
CPU_REFERENCE = REPO / "reports" / "gpu-check" / "cpu-reference"
TINY_CHECKPOINTS = ("pgd-at", "jem")


def sizes(tiny: bool) -> dict:
    """How big each part is: full size on the GPU, a CPU dry run with --tiny."""
    if tiny:
        return {"images": 20, "pgd_model": "tiny-cnn", "pgd_images": 64, "pgd_batch": 32,
                "train_model": "tiny-cnn", "train_batch": 16, "train_warmup": 1, "train_steps": 2,
                "aa_images": 10, "tests": ["tests/unit/core/test_declared_names.py"]}
    return {"images": 500, "pgd_model": "wrn-28-10", "pgd_images": 500, "pgd_batch": 250,
            "train_model": "wrn-28-10", "train_batch": 128, "train_warmup": 2, "train_steps": 8,
            "aa_images": 500,
            # the docs build never touches the device and needs Sphinx, which the offline site does not carry
            "tests": ["-m", "synthetic", "--ignore=tests/integration/test_docs.py"]}


# ---------------------------------------------------------------- checkpoints

def committed_records(recipe: str) -> dict[str, dict]:
    """The committed CPU records of checkpoints/<recipe>-smoke.pt by metric, with their outcomes."""
    out = {}
    for path in sorted((REPO / "checkpoints" / "records" / recipe).glob("*.json")):
        record = json.loads(path.read_text())
        record["outcomes_array"] = dict(np.load(path.parent / record["extra"]["outcomes"]))
        out[record["metric"]] = record
    return out


def compare_record(cpu: dict, device_record: dict, out_dir: Path) -> dict:
    """Device record vs CPU record on the same images: values, the CPU record's standard error,
    and how many images' outcomes (adv_correct, else clean_correct) differ."""
    outcomes = dict(np.load(out_dir / device_record["extra"]["outcomes"]))
    key = "adv_correct" if "adv_correct" in outcomes else "clean_correct"
    n = min(len(outcomes[key]), len(cpu["outcomes_array"][key]))
    differ = int((outcomes[key][:n] != cpu["outcomes_array"][key][:n]).sum())
    return {"cpu": cpu["value"], "device": device_record["value"], "stderr": cpu["stderr"], "n": n,
            "images_differing": differ, "within_stderr": abs(cpu["value"] - device_record["value"]) <= cpu["stderr"]}


def part_checkpoints(device, size, data, tiny) -> dict:
    rows = []
    names = TINY_CHECKPOINTS if tiny else sorted(p.name.removesuffix("-smoke.pt")
                                                 for p in (REPO / "checkpoints").glob("*-smoke.pt"))
    for recipe in names:
        cpu = committed_records(recipe)
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            records = evaluate(str(REPO / "checkpoints" / f"{recipe}-smoke.pt"), data=str(data),
                               metrics=["clean", "pgd20"], n=size["images"], out_dir=tmp, device=str(device))
            seconds = time.perf_counter() - start
            for record in records:
                if tiny:  # the committed records cover 500 images: compare the first ones only
                    cpu[record["metric"]]["value"] = float(
                        cpu[record["metric"]]["outcomes_array"]["adv_correct" if record["metric"] == "pgd20"
                                                                else "clean_correct"][:size["images"]].mean())
                row = {"recipe": recipe, "metric": record["metric"], "seconds_both": seconds,
                       "flags": [k for k, v in record.get("diagnostics", {}).items() if v.get("flag")],
                       **compare_record(cpu[record["metric"]], record, Path(tmp))}
                rows.append(row)
                print(json.dumps(row), flush=True)
    return {"rows": rows}


# ---------------------------------------------------------------- pgd

def bare_limit_seconds(model, x, y, steps: int) -> float:
    """What PGD-`steps` cannot beat on one batch: `steps` forward + input-gradient passes and one
    forward, with nothing else."""
    start = time.perf_counter()
    for _ in range(steps):
        xg = x.detach().requires_grad_(True)
        torch.autograd.grad(F.cross_entropy(model(xg), y, reduction="sum"), xg)
    with torch.no_grad():
        model(x)
    sync(x.device)
    return time.perf_counter() - start


def timed_over_batches(fn, x, y, batch: int) -> float:
    """Seconds for fn(xb, yb) over every batch of x, after one warm-up batch."""
    fn(x[:batch], y[:batch])
    sync(x.device)
    start = time.perf_counter()
    for i in range(0, len(x), batch):
        fn(x[i:i + batch], y[i:i + batch])
    sync(x.device)
    return time.perf_counter() - start


def import_torchattacks():
    """torchattacks, the reference PGD: installed (a GPU machine gets it as a carried wheel), else
    put into .cache/bench-deps as the PGD benchmark does."""
    try:
        return importlib.import_module("torchattacks")
    except ImportError:
        ensure_torchattacks()
        sys.path.insert(0, str(BENCH_DEPS))
        return importlib.import_module("torchattacks")


def part_pgd(device, size, data, tiny) -> dict:
    torchattacks = import_torchattacks()
    torch.manual_seed(0)
    model = create_model(size["pgd_model"]).to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    test = load_split(str(data), "test")
    x = test.float_images(device)[:size["pgd_images"]]
    y = test.labels[:size["pgd_images"]].to(device)
    n, batch = len(x), size["pgd_batch"]
    cfg = PGDConfig(eps=8 / 255, step_size=2 / 255, steps=20)
    rows = []
    for precision in ("float32", "bfloat16"):
        low = precision == "bfloat16"
        context = (lambda: autocast(device, True)) if low else exact_float32
        gen = torch.Generator(device=device).manual_seed(0)

        def ours(xb, yb):
            with context(), inner_loop_precision("bfloat16" if low else "float32"):
                return pgd(model, xb, yb, cfg, gen, trace=AttackTrace())

        reference = torchattacks.PGD(model, eps=8 / 255, alpha=2 / 255, steps=20, random_start=True)

        def theirs(xb, yb):
            with context():
                return reference(xb, yb)

        def limit(xb, yb):
            with context():
                return bare_limit_seconds(model, xb, yb, 20)

        if device.type == "cuda" and low and not torch.cuda.is_bf16_supported():
            print(json.dumps({"precision": precision, "skipped": "this GPU has no bfloat16"}), flush=True)
            continue
        ours_s = timed_over_batches(ours, x, y, batch)
        print(json.dumps({"precision": precision, "energybench_seconds": ours_s}), flush=True)
        theirs_s = timed_over_batches(theirs, x, y, batch)
        print(json.dumps({"precision": precision, "torchattacks_seconds": theirs_s}), flush=True)
        limit_s = timed_over_batches(limit, x, y, batch)
        row = {"precision": precision, "images": n, "batch": batch, "seconds": ours_s,
               "images_per_s": n / ours_s, "torchattacks_seconds": theirs_s,
               "speedup_vs_torchattacks": theirs_s / ours_s, "limit_seconds": limit_s,
               "ratio_to_limit": ours_s / limit_s, "projected_10k_seconds": 10_000 * ours_s / n}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return {"model": size["pgd_model"], "rows": rows}


# ---------------------------------------------------------------- training

def paper_config(recipe: str, size: dict, data: Path, steps: int):
    cfg = preset_config(recipe, "paper")
    cfg = replace(cfg, data=replace(cfg.data, source=str(data)))
    overrides = [f"optim.batch_size={size['train_batch']}", f"data.train_subset={size['train_batch'] * (steps + 4)}",
                 "data.eval_subset=0", "data.holdout=0", "run.dynamics_probe=0", "optim.epochs=3"]
    cfg = apply_overrides(cfg, overrides)
    if cfg.model.name != size["train_model"]:  # the dry run: the recipe's algorithm on a tiny model
        cfg = replace(cfg, model=replace(cfg.model, name=size["train_model"], kwargs={}))
    if hasattr(cfg.params, "buffer_size"):  # a replay buffer a few batches long
        cfg = replace(cfg, params=replace(cfg.params, buffer_size=min(cfg.params.buffer_size, 20 * size["train_batch"])))
    return cfg


def part_training(device, size, data, tiny) -> dict:
    rows = []
    steps = size["train_warmup"] + size["train_steps"]
    for recipe in recipe_names():
        cfg = paper_config(recipe, size, data, steps)
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        with tempfile.TemporaryDirectory() as tmp:
            trainer = Trainer(cfg, tmp, device)
            trainer.run(stop_after_steps=size["train_warmup"])
            sync(device)
            times, losses = [], []
            for _ in range(size["train_steps"]):
                before = trainer.totals.loss
                start = time.perf_counter()
                trainer.run(stop_after_steps=trainer.global_step + 1)
                sync(device)
                times.append(time.perf_counter() - start)
                losses.append(trainer.totals.loss - before)
        row = {"recipe": recipe, "model": cfg.model.name, "batch": cfg.optim.batch_size, "amp": cfg.run.amp,
               "step_seconds": median(times), "passes_per_step": trainer.recipe.passes_per_step(),
               "peak_memory_mb": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
               "nonfinite_losses": sum(not math.isfinite(v) for v in losses), "rollbacks": trainer.rollbacks}
        rows.append(row)
        print(json.dumps(row), flush=True)
    normal = next(r["step_seconds"] for r in rows if r["recipe"] == "normal")
    for row in rows:
        row["vs_normal"] = row["step_seconds"] / normal
    return {"steps_timed": size["train_steps"], "rows": rows}


# ---------------------------------------------------------------- autoattack

def part_autoattack(device, size, data, tiny) -> dict:
    cpu = next(json.loads(p.read_text()) for p in sorted(CPU_REFERENCE.glob("autoattack-*.json")))
    cpu_outcomes = dict(np.load(CPU_REFERENCE / cpu["extra"]["outcomes"]))
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        (record,) = evaluate(str(REPO / "checkpoints" / "pgd-at-smoke.pt"), data=str(data), metrics=["autoattack"],
                             n=size["aa_images"], out_dir=tmp, device=str(device))
        seconds = time.perf_counter() - start
        outcomes = dict(np.load(Path(tmp) / record["extra"]["outcomes"]))
    n = len(outcomes["adv_correct"])
    cpu_value = float(cpu_outcomes["adv_correct"][:n].mean())
    row = {"images": n, "seconds": seconds, "cpu_seconds": cpu["wall_seconds"] if n == cpu["n"] else None,
           "device": record["value"], "cpu": cpu_value, "stderr": cpu["stderr"],
           "per_attack": record["extra"]["per_attack"],
           "images_differing": int((outcomes["adv_correct"] != cpu_outcomes["adv_correct"][:n]).sum())}
    print(json.dumps(row), flush=True)
    return row


# ---------------------------------------------------------------- syncs

def sync_sites(fn) -> Counter:
    """Device-to-host synchronisations fn() makes (CUDA's sync debug mode warns on each), counted
    by the innermost energybench line that made them ("energybench/attacks/pgd.py:233")."""
    sites: Counter = Counter()
    package = str(REPO / "energybench")

    def note(message, category, filename, lineno, file=None, line=None):
        if "synchroniz" in str(message):
            ours = [f for f in traceback.extract_stack()[:-1] if f.filename.startswith(package)]
            where = ours[-1] if ours else None
            sites[f"{Path(where.filename).relative_to(REPO)}:{where.lineno}" if where else "outside energybench"] += 1

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = note
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sites


def count_syncs(fn) -> int:
    """How many device-to-host synchronisations fn() makes."""
    return sum(sync_sites(fn).values())


def part_syncs(device, size, data, tiny) -> dict:
    if device.type != "cuda":
        return {"skipped_reason": "host synchronisations are counted on CUDA only (its sync debug mode)"}
    model = create_model("tiny-cnn").to(device).eval()
    x, y = torch.rand(64, 3, 32, 32, device=device), torch.randint(0, 10, (64,), device=device)
    gen = torch.Generator(device=device).manual_seed(0)

    def attack(steps):
        return lambda: pgd(model, x, y, PGDConfig(steps=steps), gen, trace=AttackTrace())

    attack(2)()  # warm-up
    per_pgd_step = (count_syncs(attack(6)) - count_syncs(attack(2))) / 4
    rows = {"pgd_per_step": per_pgd_step, "pgd_per_attack_fixed": count_syncs(attack(2)) - 2 * per_pgd_step}
    small = dict(size, train_model="tiny-cnn", train_batch=32)
    for recipe in ("normal", "pgd-at", "jem", "eb-jdat", "sadajem"):
        try:
            with tempfile.TemporaryDirectory() as tmp:
                trainer = Trainer(paper_config(recipe, small, data, 6), tmp, device)
                trainer.run(stop_after_steps=2)
                one = count_syncs(lambda: trainer.run(stop_after_steps=trainer.global_step + 1))
                two = count_syncs(lambda: trainer.run(stop_after_steps=trainer.global_step + 2))
            rows[f"train_step_{recipe}"] = two - one
        except Exception as exc:  # one recipe's failure is reported, the others still counted
            rows[f"train_step_{recipe}"] = f"failed: {type(exc).__name__}: {exc}"
    rows["sites_pgd_6_steps"] = dict(sync_sites(attack(6)))
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(paper_config("jem", small, data, 6), tmp, device)
        trainer.run(stop_after_steps=2)
        rows["sites_train_step_jem"] = dict(sync_sites(lambda: trainer.run(stop_after_steps=trainer.global_step + 1)))
    print(json.dumps(rows), flush=True)
    return rows


# ---------------------------------------------------------------- tests

def part_tests(device, size, data, tiny, out: Path, seconds: float) -> dict:
    """The test tier, on the device where a test's commands say --device auto."""
    cmd = [sys.executable, "-m", "pytest", "-v", "--tb=line", "-rfE", "-p", "no:cacheprovider", *size["tests"]]
    env = {**os.environ, "ENERGYBENCH_SHARED_DATA": str(Path(data).parent), "ENERGYBENCH_PROGRESS": "0"}
    try:
        done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=seconds)
        text, status = done.stdout + done.stderr, done.returncode
    except subprocess.TimeoutExpired as exc:
        text = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        status = "timeout"
    (out / "tests.log").write_text(text)
    summary = next((line for line in reversed(text.splitlines()) if " passed" in line or " failed" in line), "")
    if status == "timeout":  # no summary line: count the verbose result lines
        summary = (f"stopped at the deadline after {text.count(' PASSED')} passed, {text.count(' FAILED')} failed, "
                   f"{text.count(' ERROR')} errors")
    failed = [line for line in text.splitlines() if line.startswith(("FAILED", "ERROR"))]
    return {"status": status, "summary": summary.strip("= "), "failed": failed}


# ---------------------------------------------------------------- driver and report

def json_line(line: str) -> dict | None:
    """A row a part printed (a JSON object on its own line), else None."""
    if not line.startswith("{"):
        return None
    try:
        value = json.loads(line)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def run_part(name: str, args, seconds: float) -> dict:
    """One part in its own process (its own peak memory; a crash or a hang stays in it)."""
    cmd = [sys.executable, __file__, "--part", name, "--device", args.device, "--data", str(args.data),
           "--out", str(args.out)] + (["--tiny"] if args.tiny else [])
    start = time.perf_counter()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=max(seconds, 5),
                              env={**os.environ, "ENERGYBENCH_PROGRESS": "0"})
        log, status = done.stdout + done.stderr, done.returncode
    except subprocess.TimeoutExpired as exc:
        log = "".join(s.decode() if isinstance(s, bytes) else (s or "") for s in (exc.stdout, exc.stderr))
        status = "timeout"
    with open(args.out / "parts.log", "a") as fh:
        fh.write(f"==== {name} (status {status}, {time.perf_counter() - start:.1f} s)\n{log}\n")
    result_file = args.out / f".{name}.json"
    if result_file.exists() and status == 0:
        result = json.loads(result_file.read_text())
    else:  # what the part printed before it failed or ran out of time: one JSON row per line
        result = {"rows": [row for row in map(json_line, log.splitlines()) if row], "partial": True}
    result_file.unlink(missing_ok=True)
    return {"status": status, "seconds": time.perf_counter() - start, **result,
            **({"log_tail": log[-2000:]} if status != 0 else {})}


def table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """Markdown table: columns are (heading, key, format)."""
    lines = ["| " + " | ".join(h for h, _, _ in columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = []
        for _, key, fmt in columns:
            value = row.get(key)
            cells.append("" if value is None else format(value, fmt) if fmt else str(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render(results: dict) -> str:
    """README.md of the check from results.json's content (a part whose numbers cannot be laid
    out as a table is shown as its JSON)."""
    sections = []
    for name in PARTS:
        if name in results["parts"]:
            try:
                sections.append(render_part(name, results["parts"][name]))
            except (KeyError, TypeError, ValueError) as exc:
                sections.append(f"## {name}\n\n(not laid out: {exc!r})\n\n```json\n"
                                f"{json.dumps(results['parts'][name], indent=1)}\n```\n")
    head = [f"# GPU check{' (CPU dry run, --tiny)' if results['tiny'] else ''}", "",
            f"Command: `{results['command']}` ({results['created']}; {results['machine']}).", ""]
    return "\n".join(head + sections)


def render_part(name: str, part: dict) -> str:
    """One part's section of README.md."""
    out = []
    out += [f"## {name}", "", f"Status {part['status']}, {part['seconds']:.0f} s.", ""]
    if part["status"] != 0 and name != "tests":
        out += ["```", part.get("log_tail", "").strip()[-1500:], "```", ""]
        if not part.get("rows"):
            return "\n".join(out)
        out += ["Rows it finished before it stopped:", ""]
    if name == "checkpoints":
        out.append(table(part["rows"], [("checkpoint", "recipe", ""), ("metric", "metric", ""),
                                        ("CPU record", "cpu", ".3f"), ("device", "device", ".3f"),
                                        ("CPU stderr", "stderr", ".3f"), ("images differing", "images_differing", "d"),
                                        ("of", "n", "d"), ("within stderr", "within_stderr", ""),
                                        ("flags", "flags", "")]))
    elif name == "pgd":
        out.append(table(part["rows"], [("precision", "precision", ""), ("images", "images", "d"),
                                        ("images/s", "images_per_s", ".0f"), ("s", "seconds", ".2f"),
                                        ("torchattacks s", "torchattacks_seconds", ".2f"),
                                        ("x torchattacks", "speedup_vs_torchattacks", ".2f"),
                                        ("limit s", "limit_seconds", ".2f"), ("x limit", "ratio_to_limit", ".3f"),
                                        ("10k images s", "projected_10k_seconds", ".1f")]))
        out.append(f"\nModel {part.get('model', '')} (random weights: speed does not depend on them), eval mode, "
                   "batch as shown. `x limit` is our time over the bare loop's (goal <= 1.15); "
                   "`x torchattacks` is torchattacks' time over ours (> 1: we are faster).")
    elif name == "training":
        out.append(table(part["rows"], [("recipe", "recipe", ""), ("model", "model", ""), ("batch", "batch", "d"),
                                        ("amp", "amp", ""), ("s/step", "step_seconds", ".3f"),
                                        ("x normal", "vs_normal", ".2f"), ("passes/step", "passes_per_step", ""),
                                        ("peak MB", "peak_memory_mb", ".0f"),
                                        ("non-finite losses", "nonfinite_losses", "d"), ("roll-backs", "rollbacks", "d")]))
        out.append(f"\nPaper presets (batch overridden as shown), median of {part.get('steps_timed', 'the')} single "
                   "steps after warm-up steps; peak memory is torch.cuda.max_memory_allocated.")
    elif name == "autoattack":
        out.append(table(part.get("rows") or [part], [("images", "images", "d"), ("device s", "seconds", ".1f"),
                                  ("CPU s", "cpu_seconds", ".1f"), ("device", "device", ".3f"), ("CPU", "cpu", ".3f"),
                                  ("CPU stderr", "stderr", ".3f"), ("images differing", "images_differing", "d")]))
    elif name == "syncs":
        out.append("```json\n" + json.dumps({k: v for k, v in part.items() if k not in ("status", "seconds")},
                                            indent=1) + "\n```")
    elif name == "tests":
        out += [f"`{part.get('summary', '')}`", ""] + [f"- {line}" for line in part.get("failed", [])]
    out.append("")
    return "\n".join(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="CPU dry run: tiny models, a few images and steps")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=REPO / "reports" / "gpu-check")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--deadline", type=float, default=500.0, help="seconds for all parts together")
    parser.add_argument("--only", default=",".join(PARTS), help="comma-separated parts")
    parser.add_argument("--part", choices=PARTS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.data.exists():
        parser.error(f"test data {args.data} not found; pass --data PATH to the CIFAR-10 JPEG copy")
    size = sizes(args.tiny)
    if args.part:  # a worker: one part, its result to OUT/.PART.json
        device = resolve_device(args.device)
        functions = {"checkpoints": part_checkpoints, "pgd": part_pgd, "training": part_training,
                     "autoattack": part_autoattack, "syncs": part_syncs}
        result = functions[args.part](device, size, args.data.resolve(), args.tiny)
        (args.out / f".{args.part}.json").write_text(json.dumps(result))
        return 0
    only = [p for p in args.only.split(",") if p]
    unknown = sorted(set(only) - set(PARTS))
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    (args.out / "parts.log").write_text("")
    end = time.monotonic() + args.deadline
    total_share = sum(BUDGET[p] for p in only)
    results = {"command": "bash scripts/gpu_check.sh " + " ".join(argv if argv is not None else sys.argv[1:]),
               "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine(), "tiny": args.tiny,
               "device": str(resolve_device(args.device)), "parts": {}}
    for i, name in enumerate(only):
        left = end - time.monotonic()
        later = sum(BUDGET[p] for p in only[i + 1:]) * args.deadline / total_share
        seconds = left if name == only[-1] else max(left - later, BUDGET[name] * args.deadline / total_share)
        print(f"[gpu-check] {name}: up to {seconds:.0f} s", flush=True)
        if name == "tests":
            start = time.perf_counter()
            results["parts"][name] = {"status": 0, **part_tests(resolve_device(args.device), size, args.data.resolve(),
                                                               args.tiny, args.out, max(seconds, 10))}
            results["parts"][name]["seconds"] = time.perf_counter() - start
        else:
            results["parts"][name] = run_part(name, args, seconds)
        (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
        (args.out / "README.md").write_text(render(results))
    print(render(results), flush=True)
    return 0 if all(p["status"] == 0 for p in results["parts"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
