"""A reproduction as independent jobs for a cluster: plan.json (each job, its command and the jobs
it needs), the SLURM scripts that submit and run them (energybench.workflows.slurm), and `run_job`
(one job, in any order: a job trains its run first unless another job is training it).
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Callable

from energybench.core.atomic import check_writable_dir, write_json_atomic, write_text_atomic
from energybench.core.distributed import World
from energybench.core.errors import UserError
from energybench.core.hashing import json_key
from energybench.reporting.table_specs import table_names
from energybench.workflows.plan import parse_only, plan, preset_of, seeded
from energybench.workflows.reproduce import draw_run_figures, ensure_trained, evaluate_run, publish, reproduce
from energybench.workflows.slurm import SlurmOptions, environment_bin, submit_script, task_script


def _job_id(kind: str, run: str, metric: str = "", protocol: dict | None = None) -> str:
    suffix = f"@{json_key(protocol, 6)}" if protocol else ""
    return "/".join(filter(None, [kind, run, metric])) + suffix


def job_plan(preset: str, tables: list[str] | None = None, only: str | None = None,
             seeds: int | None = None) -> list[dict]:
    """The reproduction as independent jobs: one training per run and seed, one evaluation per
    checkpoint and metric, the figures of each run's first seed, and the final tables. Each job
    trains its run first if no other job has (waiting for one that is training it), so the jobs
    can run in any order and in parallel."""
    p = preset_of(preset, seeds)
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


def write_plan(preset: str, out_dir: Path, command: Callable[[str | None], list[str]], only: str | None = None,
               tables: list[str] | None = None, seeds: int | None = None,
               slurm: SlurmOptions = SlurmOptions()) -> Path:
    """OUT/plan.json (the jobs and the command that runs each), OUT/slurm.sh (submits them to SLURM
    along their `needs`) and OUT/task.sbatch (one job per array task, under torchrun):
    energybench.workflows.slurm. `command(job id)` is the argument list that runs one job (None:
    the tables), as the face that plans words it. Returns plan.json."""
    check_writable_dir(out_dir)
    p = preset_of(preset, seeds)
    jobs = job_plan(preset, tables, only, seeds)
    if tables and sorted(tables) != sorted(table_names()):
        raise UserError("a plan covers every table; leave out the table selection")
    for job in jobs:
        job["command"] = command(None if job["kind"] == "tables" else job["id"])
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "plan.json"
    write_json_atomic({"format": "energybench-reproduction-plan", "preset": preset, "seeds": p.seeds,
                       "jobs": jobs}, path)
    write_text_atomic(task_script(path, environment_bin()), out_dir / "task.sbatch")
    write_text_atomic(submit_script(out_dir, jobs, slurm), out_dir / "slurm.sh")
    return path


def run_job(job_id: str, preset: str, out_dir: Path, runs_dir: Path, data: dict[str, str], device,
            only: str | None = None, seeds: int | None = None, inception_weights: str | None = None,
            log=print, world: World = World()) -> None:
    """Run one job of `job_plan` (the same preset, recipe selection and seeds as the plan)."""
    jobs = {j["id"]: j for j in job_plan(preset, None, only, seeds)}
    if job_id not in jobs:
        close = difflib.get_close_matches(job_id, list(jobs), n=1)
        raise UserError(f"no job {job_id!r} in this reproduction's plan"
                        + (f"; did you mean {close[0]!r}?" if close else "; see plan.json"))
    job = jobs[job_id]
    p = preset_of(preset, seeds)
    if job["kind"] == "tables":
        reproduce(preset, out_dir, runs_dir, data, device, only=only, inception_weights=inception_weights,
                  log=log, seeds=seeds, world=world)
        return
    check_writable_dir(out_dir)
    check_writable_dir(runs_dir, "runs_dir")
    runs = {run.name: (run, seed) for run, seed in seeded(plan(table_names(), parse_only(only)), p.seeds)}
    run, seed = runs[job["run"]]
    run_dir = runs_dir / run.name
    ckpt, status = ensure_trained(p, run, seed, run_dir, data, device, log, world, wait=True)
    if ckpt is None or job["kind"] == "train":
        return
    if job["kind"] == "eval":
        records = evaluate_run(p, ckpt, [(job["metric"], job["protocol"])], run_dir, device, inception_weights,
                            {}, log, world)
        if world.is_main:
            publish(records, out_dir / "records" / run.name, replace_all=False)
    elif job["kind"] == "figures":
        draw_run_figures(ckpt, run, run_dir, out_dir / "figures" / run.name, device, log, world)
