"""`energybench reproduce`: train, evaluate and tabulate a preset's reproduction, or plan it as jobs.
"""

from __future__ import annotations

from pathlib import Path

import click

from energybench.cli.options import POSITIVE, echo, registry_choice
from energybench.core.errors import UserError


@click.command()
@click.option("--preset", default="smoke", show_default=True, type=click.Choice(["ci", "smoke", "paper"]),
              help="ci, smoke (CPU) or paper (GPU)")
@click.option("--only", default=None, help="comma-separated recipes to train and evaluate (default all)")
@click.option("--table", "tables", multiple=True, type=registry_choice("tables"),
              help="train, evaluate and render for these tables only (repeatable; default every table), "
                   "e.g. --table purification --only jem,jeat")
@click.option("--data", "data_spec", default="cifar10", show_default=True,
              help="CIFAR-10 source (name in the data home, folder, tar or npz)")
@click.option("--data-cifar100", default="cifar100", show_default=True,
              help="CIFAR-100 source for JEAT Table 1's second column (skipped when absent)")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="report folder (default reports/reproduce-<preset>)")
@click.option("--runs", "runs_dir", type=click.Path(path_type=Path), default=None,
              help="training runs folder (default runs/reproduce-<preset>)")
@click.option("--device", default="auto", show_default=True)
@click.option("--inception-weights", default=None,
              help="torch-fidelity Inception weights for IS/FID (a path, or 'download' when online)")
@click.option("--seeds", type=POSITIVE, default=None,
              help="training seeds per run (default: ci 1, smoke 3, paper 5); tables give mean ± std")
@click.option("--plan", "make_plan", is_flag=True,
              help="write OUT/plan.json (the independent jobs and what each needs), OUT/slurm.sh (run it on a "
                   "SLURM login node: it submits the trainings, then each run's evaluations once its "
                   "training succeeded, then the tables) and OUT/task.sbatch, instead of running anything; "
                   "the data need not be on the planning machine")
@click.option("--slurm", "slurm", multiple=True, metavar="KEY=VALUE",
              help="with --plan: SLURM settings, repeatable: KIND.time, KIND.mem, KIND.cpus, KIND.gpus "
                   "(KIND: train, eval, figures, tables; e.g. train.time=3-00:00:00, eval.gpus=2), "
                   "partition, account, throttle (most tasks of an array at once, default 16)")
@click.option("--job", "job_id", default=None, metavar="ID",
              help="run one job of the plan (with the plan's --preset, --only, --seeds, --out, --runs)")
def reproduce(preset, only, tables, data_spec, data_cifar100, out_dir, runs_dir, device, inception_weights, seeds,
              make_plan, slurm, job_id):
    """Train the tables' models, evaluate them and render every table and figure with an index.
    Under torchrun, training is data parallel and evaluation split over the processes."""
    from energybench.core.distributed import joined
    from energybench.data import resolve_source
    from energybench.core.validation import key_value
    from energybench.workflows.jobs import run_job, write_plan
    from energybench.workflows.slurm import SlurmOptions
    from energybench.workflows.reproduce import reproduce as run_reproduction

    if data_cifar100 != "cifar100" and not make_plan:  # given explicitly: it must exist (the default may be absent)
        resolve_source(data_cifar100)
    if slurm and not make_plan:
        raise UserError("--slurm sets the SLURM scripts of a plan; add --plan")
    if tables and (make_plan or job_id is not None):
        raise UserError("a plan and its jobs cover every table; leave --table out (it selects the tables of a "
                        "run without --plan)")
    out_dir = out_dir or Path(f"reports/reproduce-{preset}")
    runs_dir = runs_dir or Path(f"runs/reproduce-{preset}")
    data = {"cifar10": data_spec, "cifar100": data_cifar100}
    if make_plan:
        if job_id is not None:
            raise UserError("--plan writes the jobs; --job runs one: give one of them")
        arguments = _plan_arguments(preset, out_dir, runs_dir, data, only, seeds, inception_weights, device)
        options = SlurmOptions().with_settings([key_value(item, "--slurm", "train.time=3-00:00:00")
                                                for item in slurm])
        path = write_plan(preset, out_dir, lambda job: arguments + ([] if job is None else ["--job", job]),
                          only=only, seeds=seeds, slurm=options)
        if not Path(str(data_spec)).exists() and data_spec not in ("cifar10", "cifar100"):
            echo(f"--data {data_spec} is not on this machine: the plan gives it to the cluster's jobs as written",
                 err=True)
        echo(f"plan: {path}\nsubmit on a SLURM login node: bash {path.parent / 'slurm.sh'}")
        return
    with joined(device) as (world, dev):
        say = (lambda m: echo(m, err=True)) if world.is_main else (lambda m: None)
        if job_id is not None:
            run_job(job_id, preset, out_dir, runs_dir, data, dev, only=only, seeds=seeds,
                    inception_weights=inception_weights, log=say, world=world)
            if world.is_main:
                echo(f"job {job_id}: done")
            return
        made_by = f"energybench reproduce --preset {preset}" + (f" --only {only}" if only else "") + \
            "".join(f" --table {t}" for t in tables) + f" --data {data_spec} --out {out_dir}"
        index = run_reproduction(preset, out_dir, runs_dir, data, dev, only=only, tables=list(tables) or None,
                                 inception_weights=inception_weights,
                                 log=say, seeds=seeds, world=world, made_by=made_by)
    if world.is_main:
        echo(f"index page: {index}")


def _plan_arguments(preset, out_dir, runs_dir, data, only, seeds, inception_weights, device) -> list[str]:
    """The command line that runs this reproduction from any folder (local paths made absolute),
    refusing values with control characters: they would reach plan.json and a cluster's shell."""
    def absolute(spec):
        return str(Path(spec).resolve()) if spec is not None and Path(str(spec)).exists() else str(spec)

    from energybench.workflows.plan import preset_of

    seeds = preset_of(preset, seeds).seeds
    arguments = ["energybench", "reproduce", "--preset", preset, "--data", absolute(data["cifar10"]),
                 "--data-cifar100", absolute(data["cifar100"]), "--out", str(Path(out_dir).resolve()),
                 "--runs", str(Path(runs_dir).resolve()), "--seeds", str(seeds), "--device", device]
    arguments += ["--only", only] if only else []
    arguments += ["--inception-weights", str(inception_weights)] if inception_weights else []
    for flag, value in zip(arguments[2::2], arguments[3::2]):
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
            raise UserError(f"{flag} {value!r} holds a control character (a newline?); give a plain value")
    return arguments
