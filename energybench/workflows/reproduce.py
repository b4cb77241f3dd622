"""One command from nothing to the papers' tables (`energybench reproduce`).

The models to train are read off the table specs (energybench/tables): every entry with a recipe
is one run, named by `report.run_name`, and it is evaluated with every metric any table asks of it.
A reproduction preset fixes the scale: which recipe preset, how much data, how many test images
per metric, and whether to draw the figures. Everything resumes: a finished run is not retrained
and an existing record with the same inputs is not recomputed.

Output folder:
    README.md            index page: scale, tables, figures, what could not run and why
    tables/<name>.{md,tex,csv}
    records/<run>/<metric>.json
    figures/<run>/       sample gallery and landscape / memorization figures
"""

from __future__ import annotations

import difflib
import json
import re
import shlex
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from energybench.data import sources as datalib
from energybench.training.config import apply_overrides
from energybench.core.errors import UserError
from energybench.core.distributed import World
from energybench.evaluation.runner import evaluate
from energybench.core.hashing import json_key
from energybench.metrics import SUITES, figure_metrics
from energybench.records.figures import read_raw, save
from energybench.records.outcomes import outcomes_path
from energybench.training.recipes import preset_config, recipe_names
from energybench.reporting.report import (
    build, collect_records, entry_protocol, load_table, orderings, run_name, table_names, write_tables,
)
from energybench.core.atomic import check_writable_dir, write_json_atomic, write_text_atomic
from energybench.reporting.plotting import hist_comparison, robustness_scatter
from energybench.workflows.sample import sample_model
from energybench.training.trainer import train


@dataclass(frozen=True)
class ReproductionPreset:
    """The scale of a reproduction."""

    name: str
    recipe_preset: str  # which preset of each recipe ("smoke" or "paper")
    train_overrides: tuple[str, ...]  # --set style, applied to every run
    test_images: dict  # metric -> first n test images ("default" for the rest; None = all)
    metric_params: dict = field(default_factory=dict)  # metric -> protocol overrides
    figures: bool = False  # sample gallery + landscape and memorization figures per run
    summary: str = ""
    checkpoint: str = "last"  # which checkpoint of each run is evaluated: last, or best (best.pt)
    seeds: int = 1  # training seeds per run (the JEAT paper repeats every experiment 5 times)

    def n_for(self, metric: str) -> int | None:
        return self.test_images.get(metric, self.test_images["default"])


PRESETS = {
    "ci": ReproductionPreset(
        "ci", "smoke",
        ("data.train_subset=1000", "optim.epochs=2", "data.eval_subset=0", "run.deterministic=true",
         "run.dynamics_probe=0"),
        {"default": 300, "autoattack": 48, "jfs": 100, "mfs": 100},
        {"jfs": {"probes": 4}, "mfs": {"probes": 4}, "attack-sanity": {"max_images": 32, "square_queries": 300}},
        summary="CPU, minutes: the regression fixture CI re-runs (1,000 images, 2 epochs)"),
    "smoke": ReproductionPreset(
        "smoke", "smoke", (),  # the recipes' smoke preset as it is: 5,000 images, 6 epochs
        {"default": 500, "autoattack": 100, "jfs": 200, "mfs": 200},
        {"attack-sanity": {"max_images": 100}},
        figures=True, seeds=3,
        summary="CPU, about two hours of training and evaluation on 2 cores (tiny-cnn, 5,000 images, 6 epochs, 3 seeds)"),
    "paper": ReproductionPreset(
        "paper", "paper", (), {"default": None},
        {"autoattack": {"max_images": 10_000}, "is": {"n_per_class": 5000}, "fid": {"n_per_class": 5000},
         "attack-sanity": {"max_images": 1000}},
        figures=True, summary="GPU, days: every recipe's paper preset, full test set, 50,000 IS/FID samples, 5 seeds",
        checkpoint="best", seeds=5),
}
# the figures of each run: every metric with a figure but the attack diagnostics
FIGURE_METRICS = [name for name in figure_metrics() if name not in SUITES["diagnostics"]]
ROBUSTNESS_METRICS = ("pgd20", "pgd20-energy", "autoattack", "pgd20-ebjdat-public", "pgd20-jem-public")
GALLERY = {"n_per_class": 10, "mode": "joint", "init": "class-gaussian", "steps": 100,
           "step_size": 0.25, "noise": 0.005}


@dataclass
class RunPlan:
    """One model to train and the evaluations the tables need from it: (metric, the entry's own
    protocol values for it, e.g. the sampler a paper used for that row)."""

    name: str
    recipe: str
    dataset: str
    params: dict
    evaluations: list[tuple[str, dict]]

    @property
    def metrics(self) -> list[str]:
        return list(dict.fromkeys(metric for metric, _ in self.evaluations))


def plan(tables: list[str], only: list[str] | None = None) -> list[RunPlan]:
    """The runs behind `tables` (optionally only those of the given recipes), in table order."""
    runs: dict[str, RunPlan] = {}
    for name in tables:
        spec = load_table(name)
        for entry in spec["entries"]:
            if entry["recipe"] is None or (only and entry["recipe"] not in only):
                continue
            key = run_name(entry)
            run = runs.setdefault(key, RunPlan(key, entry["recipe"], entry["dataset"],
                                               dict(entry.get("params", {})), []))
            if (run.recipe, run.dataset, run.params) != (entry["recipe"], entry["dataset"], entry.get("params", {})):
                raise ValueError(f"table {name}: run {key} means two different models")
            wanted = [(m["metric"], entry_protocol(entry, m)) for m in spec["measures"]]
            wanted += [(m["public"]["metric"], {}) for m in spec["measures"]
                       if m.get("public") and entry["key"] in m["public"]["entries"]]
            if any(m in ROBUSTNESS_METRICS for m, _ in wanted):
                wanted.append(("attack-sanity", {}))  # the diagnostics suite behind every robustness number
            run.evaluations += [w for w in wanted if w not in run.evaluations]
    return list(runs.values())


def parse_only(only: str | None) -> list[str] | None:
    if not only:
        return None
    names = [s.strip() for s in only.split(",") if s.strip()]
    unknown = [n for n in names if n not in recipe_names()]
    if unknown:
        raise UserError(f"--only: unknown recipe(s) {', '.join(unknown)}; known: {', '.join(recipe_names())}")
    return names


def base_run_name(name: str) -> str:
    """The run a seed's folder belongs to: 'jeat-seed2' -> 'jeat'."""
    return re.sub(r"-seed\d+$", "", name)


def seeded(runs: list[RunPlan], seeds: int) -> list[tuple[RunPlan, int]]:
    """Each run once per training seed 0..seeds-1; seed k > 0 trains into `<run>-seed<k>`."""
    return [(replace(run, name=run.name if k == 0 else f"{run.name}-seed{k}"), k)
            for run in runs for k in range(seeds)]


def _preset(preset: str, seeds: int | None) -> ReproductionPreset:
    if preset not in PRESETS:
        raise UserError(f"unknown preset '{preset}'; choose one of {', '.join(PRESETS)}")
    p = PRESETS[preset]
    if seeds is not None:
        if seeds < 1:
            raise UserError(f"--seeds must be at least 1, got {seeds}")
        p = replace(p, seeds=seeds)
    return p


def reproduce(preset: str, out_dir: Path, runs_dir: Path, data: dict[str, str], device: torch.device,
              only: str | None = None, tables: list[str] | None = None, inception_weights: str | None = None,
              log=print, seeds: int | None = None, world: World = World()) -> Path:
    """Train, evaluate and render; returns the index page. `data` maps dataset -> data spec;
    `seeds` (default: the preset's) trains every run that many times, and the tables report the
    mean and standard deviation over them. Under torchrun every rank runs this: training is data
    parallel, evaluation and sampling are split over the ranks, and rank 0 writes the report."""
    p = _preset(preset, seeds)
    tables = tables or table_names()
    runs = [run for run, _ in seeded(plan(tables, parse_only(only)), 1)]
    jobs = seeded(runs, p.seeds)
    out_dir, runs_dir = Path(out_dir), Path(runs_dir)
    check_writable_dir(out_dir)
    check_writable_dir(runs_dir, "--runs")
    datalib.resolve_source(data.get("cifar10"))  # CIFAR-10 is required: a missing one is an error
    status: dict[str, dict] = {}
    for run, seed in jobs:
        log(f"== {run.name}: {run.recipe} on {run.dataset}, training seed {seed}")
        status[run.name] = _reproduce_run(p, run, seed, runs_dir / run.name, out_dir, data, device,
                                          inception_weights, log, world)
    index = out_dir / "README.md"
    if not world.is_main:
        return index
    records = collect_records([out_dir / "records"]) if (out_dir / "records").exists() else []
    rendered = write_tables(records, out_dir / "tables", tables)
    ordering_lines = [line for name in tables for line in orderings(load_table(name), build(load_table(name), records))]
    write_json_atomic({"preset": preset, "runs": status}, out_dir / "status.json")
    figure_records = collect_records([out_dir / "figures"]) if (out_dir / "figures").exists() else []
    comparisons = comparison_figures(records, figure_records, out_dir / "figures") if p.figures else []
    seconds = {"training": sum(s.get("train_seconds_total", 0.0) for s in status.values()),
               "evaluation": sum(r.get("wall_seconds") or 0.0 for r in records + figure_records)}
    write_text_atomic(index_page(p, [run for run, _ in jobs], status, rendered, out_dir, data, only, seconds,
                                 comparisons, ordering_lines), index)
    log(f"index page: {index}")
    return index


def _data_spec(run: RunPlan, data: dict) -> tuple[str | None, str]:
    """The run's data spec, or None and why it cannot run here."""
    spec, reason = data.get(run.dataset), f"no data given for {run.dataset}"
    if spec is not None:
        try:
            datalib.resolve_source(spec)  # present? (train() reads and checks the data itself)
        except UserError as exc:
            spec, reason = None, str(exc)
    return spec, reason


def _ensure_trained(p: ReproductionPreset, run: RunPlan, seed: int, run_dir: Path, data: dict, device, log,
                    world: World, wait: bool = False) -> tuple[Path | None, dict]:
    """Train the run (or find it trained): (the checkpoint to evaluate, status). A run whose data
    is absent is skipped; training that fails (the divergence guard gave up) is reported. With
    wait=True a run another job is training is waited for instead of refused."""
    spec, reason = _data_spec(run, data)
    if spec is None:
        log(f"{run.name}: skipped: {reason}")
        return None, {"skipped": reason}
    cfg = preset_config(run.recipe, p.recipe_preset)
    sets = [f"data.source={spec}", *p.train_overrides, *(f"recipe.{k}={v!r}" for k, v in run.params.items()),
            f"run.seed={seed}"]
    cfg = apply_overrides(cfg, sets)
    start = time.perf_counter()
    try:
        ckpt = train(cfg, run_dir, device, resume=(run_dir / "last.pt").exists(), world=world, wait_for_lock=wait)
    except UserError as exc:  # e.g. the divergence guard gave up
        log(f"{run.name}: training failed: {exc}")
        return None, {"failed": str(exc)}
    if p.checkpoint == "best" and (run_dir / "best.pt").exists():
        ckpt = run_dir / "best.pt"
    return ckpt, {"train_seconds_this_call": time.perf_counter() - start, "checkpoint": str(ckpt),
                  "evaluated": ckpt.stem, "train_seconds_total": _train_seconds(run_dir), "refused": {}}


def _evaluate(p: ReproductionPreset, ckpt: Path, evaluations, run_dir: Path, device, inception_weights,
              refused: dict, log, world: World) -> list[dict]:
    records = []
    for metric, protocol in evaluations:  # one call each: its own n and protocol overrides
        records += evaluate(ckpt, [metric], n=p.n_for(metric), out_dir=run_dir / "eval", device=device,
                            overrides={"inception_weights": inception_weights,
                                       **p.metric_params.get(metric, {}), **protocol},
                            refused=refused, log=log, world=world)
    return records


def _publish(records: list[dict], records_dir: Path, replace_all: bool) -> None:
    """Copy records with their per-image outcomes into the report; replace_all first empties the
    run's folder (it then holds exactly this reproduction's records)."""
    if replace_all and records_dir.exists():
        shutil.rmtree(records_dir)
    records_dir.mkdir(parents=True, exist_ok=True)
    for record in records:
        source = Path(record["file"])
        shutil.copyfile(source, records_dir / source.name)
        outcomes = outcomes_path(source)
        if outcomes.exists():
            shutil.copyfile(outcomes, records_dir / outcomes.name)


def _reproduce_run(p: ReproductionPreset, run: RunPlan, seed: int, run_dir: Path, out_dir: Path, data: dict,
                   device, inception_weights, log, world: World = World()) -> dict:
    ckpt, status = _ensure_trained(p, run, seed, run_dir, data, device, log, world)
    if ckpt is None:
        return status
    records = _evaluate(p, ckpt, run.evaluations, run_dir, device, inception_weights, status["refused"],
                        log, world)
    if world.is_main:
        _publish(records, out_dir / "records" / run.name, replace_all=True)
    if p.figures and seed == 0:  # figures of the first seed's model
        status["figures"] = _figures(ckpt, run, run_dir, out_dir / "figures" / run.name, device, log, world)
    return status


# ----------------------------------------------------------------------------- a plan of jobs


def _job_id(kind: str, run: str, metric: str = "", protocol: dict | None = None) -> str:
    suffix = f"@{json_key(protocol, 6)}" if protocol else ""
    return "/".join(filter(None, [kind, run, metric])) + suffix


def job_plan(preset: str, tables: list[str] | None = None, only: str | None = None,
             seeds: int | None = None) -> list[dict]:
    """The reproduction as independent jobs: one training per run and seed, one evaluation per
    checkpoint and metric, the figures of each run's first seed, and the final tables. Each job
    trains its run first if no other job has (waiting for one that is training it), so the jobs
    can run in any order and in parallel."""
    p = _preset(preset, seeds)
    runs = plan(tables or table_names(), parse_only(only))
    jobs = []
    for run, seed in seeded(runs, p.seeds):
        train_id = _job_id("train", run.name)
        jobs.append({"id": train_id, "kind": "train", "run": run.name, "seed": seed, "needs": []})
        for metric, protocol in run.evaluations:
            jobs.append({"id": _job_id("eval", run.name, metric, protocol), "kind": "eval", "run": run.name,
                         "seed": seed, "metric": metric, "protocol": protocol, "needs": [train_id]})
        if p.figures and seed == 0:
            jobs.append({"id": _job_id("figures", run.name), "kind": "figures", "run": run.name, "seed": seed,
                         "needs": [train_id]})
    jobs.append({"id": "tables", "kind": "tables", "needs": [j["id"] for j in jobs]})
    return jobs


def write_plan(preset: str, out_dir: Path, runs_dir: Path, data: dict[str, str], only: str | None = None,
               tables: list[str] | None = None, seeds: int | None = None,
               inception_weights: str | None = None, device: str = "auto") -> Path:
    """OUT/plan.json (the jobs and the command that runs each) and OUT/slurm.sh (a SLURM array
    over the jobs but the last, each under torchrun; the tables job after them). Returns plan.json."""
    check_writable_dir(out_dir)
    p = _preset(preset, seeds)
    jobs = job_plan(preset, tables, only, seeds)
    def absolute(spec):  # a local path is written absolute: jobs may start in another folder
        return str(Path(spec).resolve()) if spec is not None and Path(str(spec)).exists() else str(spec)

    base = ["energybench", "reproduce", "--preset", preset, "--data", absolute(data.get("cifar10")),
            "--data-cifar100", absolute(data.get("cifar100", "cifar100")), "--out", str(Path(out_dir).resolve()),
            "--runs", str(Path(runs_dir).resolve()), "--seeds", str(p.seeds), "--device", device]
    if only:
        base += ["--only", only]
    if inception_weights:
        base += ["--inception-weights", str(inception_weights)]
    if tables and sorted(tables) != sorted(table_names()):
        raise UserError("--plan covers every table; leave out the table selection")
    for option, value in zip(base, base[1:]):
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
            raise UserError(f"{option} {value!r} holds a control character (a newline?); it would be "
                            f"written into slurm.sh: give a plain value")
    for job in jobs:
        job["command"] = base if job["kind"] == "tables" else [*base, "--job", job["id"]]
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "plan.json"
    write_json_atomic({"format": "energybench-reproduction-plan", "preset": preset, "seeds": p.seeds,
                       "jobs": jobs}, path)
    write_text_atomic(slurm_script(path, jobs, base), out_dir / "slurm.sh")
    return path


def slurm_script(plan_path: Path, jobs: list[dict], base: list[str]) -> str:
    """A SLURM array script: task i runs job i of the plan under torchrun (GPUS_PER_NODE processes,
    default 1); the tables job is submitted after the array."""
    if any(ord(ch) < 32 or ord(ch) == 127 for arg in base for ch in arg):
        raise UserError("a value for slurm.sh holds a control character; give plain values")
    quoted = " ".join(shlex.quote(a) for a in base[1:])
    return f"""#!/bin/bash
# energybench reproduction as a SLURM job array: {len(jobs) - 1} jobs, then the tables.
#   sbatch slurm.sh                       # the array: one job per task, in any order
#   then the tables, after the array: the "tables" job's command in plan.json, e.g.
#   sbatch --dependency=afterok:<array job id> --wrap "energybench reproduce ..."
# Each task trains its run first if no other task has (and waits for one that is training it),
# so tasks may run in any order and in parallel; rerunning a task resumes it.
# Edit the resources below: each task runs its job under torchrun, one process per GPU.
#SBATCH --job-name=energybench-reproduce
#SBATCH --array=0-{len(jobs) - 2}
#SBATCH --nodes=1
#SBATCH --gpus-per-node=1
set -euo pipefail
JOB=$(python -c 'import json, sys; print(json.load(open(sys.argv[1]))["jobs"][int(sys.argv[2])]["id"])' \\
      {shlex.quote(str(plan_path.resolve()))} "$SLURM_ARRAY_TASK_ID")
torchrun --standalone --nproc_per_node "${{SLURM_GPUS_ON_NODE:-1}}" -m energybench {quoted} --job "$JOB"
"""


def run_job(job_id: str, preset: str, out_dir: Path, runs_dir: Path, data: dict[str, str], device,
            only: str | None = None, seeds: int | None = None, inception_weights: str | None = None,
            log=print, world: World = World()) -> None:
    """Run one job of `job_plan` (the same preset, --only and --seeds as the plan)."""
    jobs = {j["id"]: j for j in job_plan(preset, None, only, seeds)}
    if job_id not in jobs:
        close = difflib.get_close_matches(job_id, list(jobs), n=1)
        raise UserError(f"no job {job_id!r} in this reproduction's plan"
                        + (f"; did you mean {close[0]!r}?" if close else "; see plan.json"))
    job = jobs[job_id]
    p = _preset(preset, seeds)
    if job["kind"] == "tables":
        reproduce(preset, out_dir, runs_dir, data, device, only=only, inception_weights=inception_weights,
                  log=log, seeds=seeds, world=world)
        return
    check_writable_dir(out_dir)
    check_writable_dir(runs_dir, "--runs")
    runs = {run.name: (run, seed) for run, seed in seeded(plan(table_names(), parse_only(only)), p.seeds)}
    run, seed = runs[job["run"]]
    run_dir = runs_dir / run.name
    ckpt, status = _ensure_trained(p, run, seed, run_dir, data, device, log, world, wait=True)
    if ckpt is None or job["kind"] == "train":
        return
    if job["kind"] == "eval":
        records = _evaluate(p, ckpt, [(job["metric"], job["protocol"])], run_dir, device, inception_weights,
                            {}, log, world)
        if world.is_main:
            _publish(records, out_dir / "records" / run.name, replace_all=False)
    elif job["kind"] == "figures":
        _figures(ckpt, run, run_dir, out_dir / "figures" / run.name, device, log, world)


def _figures(ckpt: Path, run: RunPlan, run_dir: Path, dest: Path, device, log, world: World = World()) -> list[str]:
    """Sample gallery (eq. 17 from the class Gaussian) and the landscape / memorization figures."""
    gallery = dest / "samples"
    if not (gallery / "grid.png").exists():
        sample_model(ckpt, GALLERY["n_per_class"], GALLERY["mode"], GALLERY["init"], GALLERY["steps"],
                     GALLERY["step_size"], GALLERY["noise"], None, gallery, device, 0, world=world)
        if world.is_main:
            (gallery / "samples.npz").unlink()  # the report keeps the pictures, not the arrays
    refused: dict = {}
    records = evaluate(ckpt, FIGURE_METRICS, n=200, out_dir=run_dir / "eval-figures", device=device,
                       overrides={"n_per_class": 5, "steps": 100}, refused=refused, log=log, world=world)
    if not world.is_main:
        return []
    for old in dest.glob("*"):  # only this reproduction's figures
        if old.is_file():
            old.unlink()
    pngs = [gallery / "grid.png"]
    for record in records:  # each figure with its raw data and record beside it
        source = Path(record["file"])
        for src in sorted(source.parent.glob(f"{source.stem}.*")):
            shutil.copyfile(src, dest / src.name)
        if "figure" in record["extra"]:
            pngs.append(dest / record["extra"]["figure"])
    return [str(p.relative_to(dest.parent.parent)) for p in pngs if p.exists()]


def comparison_figures(records: list[dict], figure_records: list[dict], dest: Path) -> list[str]:
    """Cross-recipe figures: every run's energy histogram side by side, and robust vs clean
    accuracy (PGD-20 and AutoAttack at 8/255). Returns their paths relative to the report."""

    made = []
    hists = {Path(r["_file"]).parent.name: r for r in figure_records if r["metric"] == "energy-hist"}
    if len(hists) > 1:
        panels = {name: (r, read_raw(Path(r["_file"]), r)) for name, r in sorted(hists.items())}
        made += save(hist_comparison(panels), dest / "compare-energy-hist")
    by_run: dict[str, dict] = {}  # run (its seeds pooled) -> metric -> values over seeds
    for r in records:
        if r["metric"] in ("clean", "pgd20", "autoattack") and abs(r["params"].get("eps", 8 / 255) - 8 / 255) < 1e-9:
            point = by_run.setdefault(base_run_name(Path(r["_file"]).parent.name), {})
            point.setdefault(r["metric"], []).append(r["value"])
            point[f"n_{r['metric']}"] = r["n"]
    points = [{"name": name, **{k: (sum(v) / len(v) if isinstance(v, list) else v) for k, v in values.items()}}
              for name, values in sorted(by_run.items()) if "clean" in values and "pgd20" in values]
    if len(points) > 1:
        labels = sorted({str((r.get("data") or {}).get("label")) for r in records if r["metric"] == "pgd20"})
        made += save(robustness_scatter(points, "; ".join(labels) or None), dest / "compare-robustness")
    return [str(p.relative_to(dest.parent)) for p in made if p.suffix == ".png"]


def _train_seconds(run_dir: Path) -> float:
    log = run_dir / "log.jsonl"
    if not log.exists():
        return 0.0
    return sum(json.loads(line).get("epoch_seconds", 0.0) for line in log.read_text().splitlines() if line.strip())


def index_page(p: ReproductionPreset, runs: list[RunPlan], status: dict, rendered: dict, out_dir: Path,
               data: dict, only: str | None, seconds: dict, comparisons: list[str] = (),
               ordering_lines: list[str] = ()) -> str:
    command = f"energybench reproduce --preset {p.name}" + (f" --only {only}" if only else "") + \
        f" --data {data.get('cifar10')}" + f" --out {out_dir}"
    lines = [f"# Reproduction: preset `{p.name}`", "",
             f"Made by `{command}` ({time.strftime('%Y-%m-%d')}). Re-running it resumes: finished "
             "runs are not retrained, existing records are reused.", "",
             f"Scale: {p.summary}. Recipe preset `{p.recipe_preset}`"
             + (f" with `{' '.join(p.train_overrides)}`" if p.train_overrides else "")
             + "; test images per metric: " + ", ".join(f"{k} {v if v else 'all'}" for k, v in p.test_images.items())
             + f"; {p.seeds} training seed{'s' if p.seeds > 1 else ''} per run"
             + (" (the tables give the mean ± standard deviation over seeds, and mark with ≈ the "
                "differences between rows that are not significant at 5%)" if p.seeds > 1 else "")
             + f". Evaluated checkpoint: `{p.checkpoint}`"
             + (" (best.pt, the epoch with the highest held-out PGD-10 robust accuracy for recipes "
                "that train against an attack, clean accuracy for the others, where the run has a "
                "holdout; else last.pt)" if p.checkpoint == "best" else
                " (last.pt, the end of training)")
             + ". Every measured cell names its scale; † marks a scale unlike the paper's.", "",
             f"Compute: {seconds['training'] / 60:.1f} minutes of training and {seconds['evaluation'] / 60:.1f} "
             "minutes of evaluation (sums over the runs' epochs and the records; sampling for the "
             "galleries not included).", "",
             "## Runs", "", "| run | recipe | dataset | training (s) | evaluated | status |",
             "|---|---|---|---:|---|---|"]
    for run in runs:
        s = status[run.name]
        state = ("skipped: " + s["skipped"]) if "skipped" in s else ("failed: " + s["failed"]) if "failed" in s \
            else ("not computed: " + ", ".join(s["refused"]) if s["refused"] else "complete")
        lines.append(f"| {run.name} | {run.recipe}{_params_text(run.params)} | {run.dataset} | "
                     f"{s.get('train_seconds_total', 0):.0f} | {s.get('evaluated', '–')} | {state} |")
    reasons = {v for s in status.values() for v in s.get("refused", {}).values()}
    if reasons:
        lines += ["", "Metrics not computed here, and why:", ""] + [f"- {r}" for r in sorted(reasons)]
    lines += ["", "## Tables", "", "Also as LaTeX and CSV in [tables/](tables/).", ""]
    for text in rendered.values():
        lines += [text, ""]
    if ordering_lines:
        lines += ["## Do the papers' orderings hold?", "",
                  "For every two entries of a measure with a published and a measured number: whether the "
                  "paper's ordering holds in the measured numbers, and whether the measured difference is "
                  "significant at 5% (exact McNemar test on per-image correctness, or a paired bootstrap "
                  "for scores, on the same test images; several seeds pooled as matched (image, seed) "
                  "pairs). At a scale unlike the paper's (†), orderings are what can be compared.", ""]
        lines += [f"- {line}" for line in ordering_lines] + [""]
    if p.figures:
        lines += ["## Figures", ""]
        if comparisons:
            lines += ["### All recipes", "", "Energy histograms side by side, and robust vs clean accuracy "
                      "(PNG at 300 dpi, PDF beside):", ""]
            lines += [f"![{Path(c).stem}]({c})" for c in comparisons] + [""]
        for run in runs:
            figs = status[run.name].get("figures")
            if not figs:
                continue
            lines += [f"### {run.name}", ""]
            lines.append(f"Samples (SGLD on E(x, y), eq. 17, {GALLERY['steps']} steps from the class "
                         "Gaussian; one row per class), energy contour, energy dynamics, energy "
                         "histogram and memorization grid; raw data (.npz) and records (.json) beside "
                         f"each in [figures/{run.name}/](figures/{run.name}/).")
            lines.append("")
            for fig in figs:
                lines.append(f"![{run.name}: {Path(fig).stem}]({fig})")
            lines.append("")
    return "\n".join(lines) + "\n"


def _params_text(params: dict) -> str:
    return "".join(f" ({k} = {v * 255:.0f}/255)" if k == "sigma" else f" ({k} = {v})" for k, v in params.items())
