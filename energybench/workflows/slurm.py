"""A reproduction plan as SLURM jobs a cluster can run: `slurm.sh`, run once on a login node
(`bash slurm.sh`), submits the plan's jobs with `sbatch` along its `needs` graph, and `task.sbatch`
runs one job of the plan per array task.

- The trainings are one array; the evaluations (and the figures) of each run are an array that
  starts only when that run's training task succeeded (`afterok:<train array>_<task>`), so no
  evaluation holds a GPU while it waits for a training of days; an evaluation whose training
  failed is cancelled (`--kill-on-invalid-dep=yes`), not left pending.
- The tables job runs after every other task has ended, successfully or not (`afterany`): a task
  that exits 3 (a metric that cannot be computed there, e.g. IS/FID without Inception weights)
  shows as FAILED in `sacct`, and its cells are marked in the tables.
- Resources per job kind (time, memory, CPUs, GPUs), partition, account and the throttle (at most
  that many tasks of an array at once: `--array=...%N`) are `SlurmOptions`, set with
  `reproduce --plan --slurm KEY=VALUE`; each value is checked against an allow-list pattern.
- Every task puts the environment the plan was made from first on PATH, and writes its output to
  `slurm-logs/<job name>-<array job>_<task>.out` and `.err` beside the plan.

Nothing the user typed is pasted into either script except the quoted plan folder and the
checked option values: each task reads its arguments from plan.json when it starts.
"""

from __future__ import annotations

import re
import shlex
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

from energybench.core.errors import UserError, option

KINDS = ("train", "eval", "figures", "tables")
DEFAULT_RESOURCES = {
    "train": {"time": "2-00:00:00", "mem": "64G", "cpus": 8, "gpus": 1},
    "eval": {"time": "1-00:00:00", "mem": "32G", "cpus": 8, "gpus": 1},
    "figures": {"time": "04:00:00", "mem": "32G", "cpus": 8, "gpus": 1},
    "tables": {"time": "01:00:00", "mem": "8G", "cpus": 2, "gpus": 0},
}
PATTERNS = {  # what each option may hold: nothing a shell or sbatch reads as more than a value
    "time": r"(\d+-)?\d{1,3}(:\d{2}){0,2}",
    "mem": r"\d{1,7}[KMGT]?",
    "cpus": r"\d{1,4}",
    "gpus": r"\d{1,2}",
    "partition": r"[A-Za-z0-9_.,-]{1,64}",
    "account": r"[A-Za-z0-9_.-]{1,64}",
    "throttle": r"[1-9]\d{0,4}",
}


@dataclass(frozen=True)
class SlurmOptions:
    """Resources per job kind ({kind: {time, mem, cpus, gpus}}), and partition, account (empty:
    the cluster's default) and the throttle of every array."""

    resources: dict = field(default_factory=lambda: {k: dict(v) for k, v in DEFAULT_RESOURCES.items()})
    partition: str = ""
    account: str = ""
    throttle: int = 16

    def with_settings(self, settings: list[tuple[str, str]]) -> "SlurmOptions":
        """These options with KEY=VALUE settings applied: KIND.FIELD (e.g. train.time=3-00:00:00,
        eval.gpus=2), partition, account or throttle; a UserError names a wrong key or value."""
        out = replace(self, resources={k: dict(v) for k, v in self.resources.items()})
        for key, value in settings:
            kind, _, name = key.rpartition(".")
            if kind and kind not in KINDS:
                raise UserError(f"{option('slurm', key)}: no job kind {kind!r}; the kinds are {', '.join(KINDS)}")
            allowed = ("time", "mem", "cpus", "gpus") if kind else ("partition", "account", "throttle")
            if name not in allowed:
                raise UserError(f"{option('slurm', key)}: unknown setting; use "
                                f"{', '.join(f'KIND.{a}' for a in ('time', 'mem', 'cpus', 'gpus'))} "
                                f"(KIND one of {', '.join(KINDS)}), partition, account or throttle")
            if not re.fullmatch(PATTERNS[name], value):
                raise UserError(f"{option('slurm', f'{key}={value}')}: not a SLURM {name} value "
                                f"(e.g. {_example(name)})")
            typed = int(value) if name in ("cpus", "gpus", "throttle") else value
            if kind:
                out.resources[kind][name] = typed
            else:
                out = replace(out, **{name: typed})
        return out


def _example(name: str) -> str:
    return {"time": "2-00:00:00 or 12:00:00", "mem": "64G", "cpus": "8", "gpus": "1", "partition": "gpu",
            "account": "my-project", "throttle": "16"}[name]


def environment_bin() -> Path:
    """The bin folder of the Python environment this process runs in (a venv's or conda's)."""
    return Path(sys.prefix) / "bin"


# The arguments of array task i (argv[2]) from the plan (argv[1]), NUL-separated; a task id that is
# not a job of the plan is one line on stderr and no arguments. No single quote inside: the script
# passes this to python -c in single quotes.
TASK_ARGUMENTS = """import json, sys
jobs = json.load(open(sys.argv[1]))["jobs"]
task = sys.argv[2]
if not (task.isdigit() and int(task) < len(jobs)):
    sys.exit(f"energybench: error: SLURM_ARRAY_TASK_ID {task!r} is not a job of this plan (0-{len(jobs) - 1}); "
             f"submit the plan with bash slurm.sh")
sys.stdout.write("\\0".join(jobs[int(task)]["command"][1:]) + "\\0")"""


def task_script(plan_path: Path, env_bin: Path) -> str:
    """task.sbatch: array task i runs job i of the plan (its arguments read from plan.json when it
    starts) under torchrun, one process per GPU of the node (one without GPUs)."""
    return f"""#!/bin/bash
# One job of an energybench reproduction plan; submitted by slurm.sh (the array index is the job's
# index in plan.json). Run by hand: SLURM_ARRAY_TASK_ID=3 bash task.sbatch
set -euo pipefail
export PATH={shlex.quote(str(env_bin))}:"$PATH"   # the environment the plan was made from
PLAN={shlex.quote(str(plan_path.resolve()))}
mapfile -d '' ARGS < <(python -c '{TASK_ARGUMENTS}' "$PLAN" "${{SLURM_ARRAY_TASK_ID:-}}")
[ "${{#ARGS[@]}}" -gt 0 ] || exit 2
exec torchrun --standalone --nproc_per_node "${{SLURM_GPUS_ON_NODE:-1}}" -m energybench "${{ARGS[@]}}"
"""


def _indices(numbers: list[int]) -> str:
    """A SLURM array index list: runs of consecutive numbers as ranges, e.g. 1-4,7."""
    parts, start = [], None
    for i, n in enumerate(numbers):
        if start is None:
            start = n
        if i + 1 == len(numbers) or numbers[i + 1] != n + 1:
            parts.append(str(start) if start == n else f"{start}-{n}")
            start = None
    return ",".join(parts)


def _resources(options: SlurmOptions, kind: str) -> str:
    r = options.resources[kind]
    flags = [f"--time={r['time']}", f"--mem={r['mem']}", f"--cpus-per-task={r['cpus']}"]
    flags += [f"--gpus-per-node={r['gpus']}"] if r["gpus"] else []
    return " ".join(flags)


def submit_script(plan_dir: Path, jobs: list[dict], options: SlurmOptions) -> str:
    """slurm.sh: submits the plan's jobs with sbatch along their `needs` (see the module docstring)."""
    index = {job["id"]: i for i, job in enumerate(jobs)}
    trains = [i for i, job in enumerate(jobs) if job["kind"] == "train"]
    tables = index["tables"]
    lines = [
        "#!/bin/bash",
        f"# energybench reproduction on SLURM: {len(jobs)} jobs of plan.json ({len(trains)} trainings, then each",
        "# run's evaluations and figures once its training succeeded, then the tables). Run on a login",
        "# node: bash slurm.sh   (it calls sbatch; do not sbatch it). Resources: reproduce --plan --slurm.",
        "# A task that exits 3 (a metric that cannot be computed there, e.g. IS/FID without Inception",
        "# weights) shows as FAILED; the tables job runs after every task ends and marks its cells.",
        "set -euo pipefail",
        f"HERE={shlex.quote(str(plan_dir.resolve()))}",
        'mkdir -p "$HERE/slurm-logs"',
        'submit() {  # sbatch with the options every job shares; prints the job id',
        '  sbatch --parsable --kill-on-invalid-dep=yes --output="$HERE/slurm-logs/%x-%A_%a.out" \\',
        '    --error="$HERE/slurm-logs/%x-%A_%a.err"'
        + (f" --partition={options.partition}" if options.partition else "")
        + (f" --account={options.account}" if options.account else "") + ' "$@" "$HERE/task.sbatch"',
        "}",
        f"TRAIN=$(submit --job-name=eb-train --array={_indices(trains)}%{options.throttle} {_resources(options, 'train')})",
        'AFTER="$TRAIN"',
    ]
    for t in trains:
        for kind in ("eval", "figures"):
            mine = [i for i, job in enumerate(jobs) if job["kind"] == kind and job["needs"] == [jobs[t]["id"]]]
            if mine:
                lines.append(f"ID=$(submit --job-name=eb-{kind} --array={_indices(mine)}%{options.throttle} "
                             f"--dependency=afterok:${{TRAIN}}_{t} {_resources(options, kind)})")
                lines.append('AFTER="$AFTER:$ID"')
    lines += [
        f"TABLES=$(submit --job-name=eb-tables --array={tables} --dependency=afterany:$AFTER "
        f"{_resources(options, 'tables')})",
        'echo "submitted: trainings $TRAIN; tables $TABLES (after $AFTER); logs in $HERE/slurm-logs"',
    ]
    return "\n".join(lines) + "\n"
