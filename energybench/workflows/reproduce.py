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
    status.json          every run of every invocation into this folder, and the commands: a
                         reproduction made in parts (--only, on several machines) is one report
"""

from __future__ import annotations

import json

import shutil
import time
from pathlib import Path

import torch

from energybench import data as datalib
from energybench.core.atomic import check_writable_dir, write_json_atomic, write_text_atomic
from energybench.core.distributed import World
from energybench.core.errors import UserError, option, render_options
from energybench.energy.purification import PurificationConfig
from energybench.evaluation.runner import evaluate
from energybench.records.figures import read_raw, save
from energybench.records.outcomes import outcomes_path
from energybench.reporting.cells import collect_records
from energybench.reporting.plotting import hist_comparison, robustness_scatter
from energybench.reporting.report import build, orderings, write_tables
from energybench.reporting.table_specs import load_table, table_names
from energybench.training.config import apply_overrides
from energybench.training.recipes import preset_config
from energybench.training.run import train
from energybench.workflows.index_page import index_page, train_seconds
from energybench.workflows.plan import (
    FIGURE_METRICS, GALLERY, PURIFICATION_KEY, ReproductionPreset, RunPlan, base_run_name, parse_only, plan,
    preset_of, seeded,
)
from energybench.workflows.sample import sample_model


def reproduce(preset: str, out_dir: Path, runs_dir: Path, data: dict[str, str], device: torch.device,
              only: str | None = None, tables: list[str] | None = None, inception_weights: str | None = None,
              log=print, seeds: int | None = None, world: World = World(), made_by: str | None = None) -> Path:
    """Train, evaluate and render; returns the index page. `data` maps dataset -> data spec;
    `seeds` (default: the preset's) trains every run that many times, and the tables report the
    mean and standard deviation over them. Under torchrun every rank runs this: training is data
    parallel, evaluation and sampling are split over the ranks, and rank 0 writes the report."""
    p = preset_of(preset, seeds)
    tables = tables or table_names()
    runs = [run for run, _ in seeded(plan(tables, parse_only(only)), 1)]
    if not runs:
        recipes = sorted({run.recipe for run in plan(tables, None)})
        raise UserError(f"{option('only', only)} trains no model of the tables {', '.join(tables)}; they need "
                        f"{', '.join(recipes)}")
    jobs = seeded(runs, p.seeds)
    out_dir, runs_dir = Path(out_dir), Path(runs_dir)
    check_writable_dir(out_dir)
    check_writable_dir(runs_dir, "runs_dir")
    datalib.resolve_source(data.get("cifar10"))  # CIFAR-10 is required: a missing one is an error
    earlier = earlier_status(out_dir / "status.json", preset)
    status: dict[str, dict] = {}
    for run, seed in jobs:
        log(f"== {run.name}: {run.recipe} on {run.dataset}, training seed {seed}")
        status[run.name] = _reproduce_run(p, run, seed, runs_dir / run.name, out_dir, data, device,
                                          inception_weights, log, world)
    index = out_dir / "README.md"
    if not world.is_main:
        return index
    # runs of earlier invocations into the same folder (e.g. other --only selections) stay in the report
    status = {**earlier["runs"], **status}
    seeds_listed = max(p.seeds, earlier["seeds"])
    listed = [run for run, _ in seeded(plan(tables, None), seeds_listed) if run.name in status]
    made_by = made_by or f"reproduce({preset!r}, only={only!r}, data={data.get('cifar10')!r})"
    commands = list(dict.fromkeys(earlier["made_by"] + [made_by]))
    records = collect_records([out_dir / "records"]) if (out_dir / "records").exists() else []
    rendered = write_tables(records, out_dir / "tables", tables)
    ordering_lines = [line for name in tables for line in orderings(load_table(name), build(load_table(name), records))]
    write_json_atomic({"preset": preset, "seeds": seeds_listed, "made_by": commands, "runs": status},
                      out_dir / "status.json")
    figure_records = collect_records([out_dir / "figures"]) if (out_dir / "figures").exists() else []
    comparisons = comparison_figures(records, figure_records, out_dir / "figures") if p.figures else []
    seconds = {"training": sum(s.get("train_seconds_total", 0.0) for s in status.values()),
               "evaluation": sum(r.get("wall_seconds") or 0.0 for r in records + figure_records)}
    write_text_atomic(index_page(p, listed, status, rendered, out_dir, commands, seconds,
                                 comparisons, ordering_lines), index)
    return index


def earlier_status(path: Path, preset: str) -> dict:
    """What an earlier reproduction of the same preset wrote into this folder's status.json: its
    runs, the seeds it listed and the commands that made it (empty when absent, unreadable or of
    another preset: that report is then rewritten, not merged)."""
    empty = {"runs": {}, "seeds": 1, "made_by": []}
    try:
        saved = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return empty
    if not isinstance(saved, dict) or saved.get("preset") != preset or not isinstance(saved.get("runs"), dict):
        return empty
    made_by = saved.get("made_by", [])
    return {"runs": saved["runs"], "seeds": saved.get("seeds", 1) if isinstance(saved.get("seeds"), int) else 1,
            "made_by": [c for c in made_by if isinstance(c, str)] if isinstance(made_by, list) else []}


def data_spec(run: RunPlan, data: dict) -> tuple[str | None, str]:
    """The run's data spec, or None and why it cannot run here."""
    spec, reason = data.get(run.dataset), f"no data given for {run.dataset}"
    if spec is not None:
        try:
            datalib.resolve_source(spec)  # present? (train() reads and checks the data itself)
        except UserError as exc:
            spec, reason = None, str(exc)
    return spec, reason


def ensure_trained(p: ReproductionPreset, run: RunPlan, seed: int, run_dir: Path, data: dict, device, log,
                    world: World, wait: bool = False) -> tuple[Path | None, dict]:
    """Train the run (or find it trained): (the checkpoint to evaluate, status). A run whose data
    is absent is skipped; training that fails (the divergence guard gave up) is reported. With
    wait=True a run another job is training is waited for instead of refused."""
    spec, reason = data_spec(run, data)
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
                  "evaluated": ckpt.stem, "train_seconds_total": train_seconds(run_dir), "refused": {}}


def evaluate_run(p: ReproductionPreset, ckpt: Path, evaluations, run_dir: Path, device, inception_weights,
              refused: dict, log, world: World) -> list[dict]:
    records = []
    for metric, protocol in evaluations:  # one call each: its own n and protocol overrides
        protocol = dict(protocol)
        purification = protocol.pop(PURIFICATION_KEY, None)
        records += evaluate(ckpt, [metric], n=p.n_for(metric), out_dir=run_dir / "eval", device=device,
                            overrides={"inception_weights": inception_weights,
                                       **p.metric_params.get(metric, {}), **protocol},
                            refused=refused, log=log, world=world,
                            purification=PurificationConfig(**purification) if purification else None)
    return records


def publish(records: list[dict], records_dir: Path, replace_all: bool) -> None:
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
    ckpt, status = ensure_trained(p, run, seed, run_dir, data, device, log, world)
    if ckpt is None:
        return status
    records = evaluate_run(p, ckpt, run.evaluations, run_dir, device, inception_weights, status["refused"],
                        log, world)
    if world.is_main:
        publish(records, out_dir / "records" / run.name, replace_all=True)
    if p.figures and seed == 0:  # figures of the first seed's model
        status["figures"] = draw_run_figures(ckpt, run, run_dir, out_dir / "figures" / run.name, device, log, world)
    status["refused"] = {name: render_options(why) for name, why in status["refused"].items()}  # files: words
    return status


# ----------------------------------------------------------------------------- a plan of jobs


def draw_run_figures(ckpt: Path, run: RunPlan, run_dir: Path, dest: Path, device, log, world: World = World()) -> list[str]:
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
    accuracy (PGD-20 and AutoAttack at 8/255; a run behind purification is a point of its own).
    Returns their paths relative to the report."""

    made = []
    hists = {Path(r["_file"]).parent.name: r for r in figure_records if r["metric"] == "energy-hist"}
    if len(hists) > 1:
        panels = {name: (r, read_raw(Path(r["_file"]), r)) for name, r in sorted(hists.items())}
        made += save(hist_comparison(panels), dest / "compare-energy-hist")
    by_run: dict[str, dict] = {}  # run (its seeds pooled) -> metric -> values over seeds
    for r in records:
        if r["metric"] in ("clean", "pgd20", "autoattack") and abs(r["params"].get("eps", 8 / 255) - 8 / 255) < 1e-9:
            purified = " + purification" if (r.get("identity") or {}).get("purification") else ""
            point = by_run.setdefault(base_run_name(Path(r["_file"]).parent.name) + purified, {})  # its own point
            point.setdefault(r["metric"], []).append(r["value"])
            point[f"n_{r['metric']}"] = r["n"]
    points = [{"name": name, **{k: (sum(v) / len(v) if isinstance(v, list) else v) for k, v in values.items()}}
              for name, values in sorted(by_run.items()) if "clean" in values and "pgd20" in values]
    if len(points) > 1:
        labels = sorted({str((r.get("data") or {}).get("label")) for r in records if r["metric"] == "pgd20"})
        made += save(robustness_scatter(points, "; ".join(labels) or None), dest / "compare-robustness")
    return [str(p.relative_to(dest.parent)) for p in made if p.suffix == ".png"]
