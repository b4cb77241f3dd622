"""Command line: `energybench train | eval | list | data`.

Every user error (missing data, unknown name, bad option, corrupt checkpoint) ends in one line on
stderr and exit status 2.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from energybench.errors import UserError


def _device(name: str):
    from energybench.runtime import resolve_device

    return resolve_device(name)


class FiniteFloat(click.ParamType):
    """A finite float (NaN and infinity refused) at least `min` (or above it, min_open)."""

    name = "number"

    def __init__(self, min: float = 0.0, min_open: bool = False):
        self.min, self.min_open = min, min_open

    def convert(self, value, param, ctx):
        import math

        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        if number < self.min or (self.min_open and number == self.min):
            self.fail(f"{value} must be {'>' if self.min_open else '>='} {self.min:g}", param, ctx)
        return number


SEED = click.IntRange(min=0)
POSITIVE = click.IntRange(min=1)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="energybench")
def cli():
    """Train and evaluate classifiers that are also energy-based generative models."""


# ----------------------------------------------------------------------------- train


@cli.command()
@click.argument("recipe")
@click.option("--preset", default="smoke", show_default=True, help="paper or smoke")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="override a config value, e.g. optim.lr=0.05 or recipe.sigma=16/255 (repeatable)")
@click.option("--data", "data_spec", default=None,
              help="data spec: cifar10, a torchvision folder, an image tree or .tar.gz, an .npz")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="run folder (default runs/<recipe>-<preset>)")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N")
@click.option("--resume", is_flag=True,
              help="continue the run in --out from its last checkpoint; --set may then change "
                   "optim.lr, optim.epochs, data.eval_subset, run.checkpoint_every_steps, "
                   "run.amp, run.channels_last, run.deterministic and run.guard.*")
@click.option("--show-config", is_flag=True, help="print the resolved config and exit")
def train(recipe, preset, overrides, data_spec, out_dir, device, resume, show_config):
    """Train RECIPE (see `energybench list recipes`) with a preset and overrides."""
    from dataclasses import replace

    from energybench.config import apply_overrides, describe
    from energybench.recipes import preset_config
    from energybench.trainer import train as run_training

    cfg = preset_config(recipe, preset)
    if data_spec is not None:
        cfg = replace(cfg, data=replace(cfg.data, source=data_spec))
    cfg = apply_overrides(cfg, list(overrides))
    if show_config:
        for key, value in describe(cfg):
            _echo(f"{key} = {value!r}")
        return
    from energybench.distributed import init_world, shutdown

    out_dir = out_dir or Path("runs") / f"{recipe}-{preset}"
    resume_overrides = list(overrides)
    if resume and data_spec is not None:  # the same data is no change; other data is refused
        resume_overrides.append(f"data.source={Path(data_spec).resolve() if Path(data_spec).exists() else data_spec}")
    world, dev = init_world(device)  # torchrun --nproc_per_node N -m energybench train ...
    try:
        path = run_training(cfg, out_dir, dev, resume=resume, world=world,
                            resume_overrides=resume_overrides if resume else None)
    finally:
        shutdown(world)
    if world.is_main:
        _echo(f"checkpoint: {path}")


# ----------------------------------------------------------------------------- eval


@cli.command("eval")
@click.option("--ckpt", "model_path", required=True, type=click.Path(path_type=Path),
              help="an energybench checkpoint (.pt) or a torch.export program (.pt2)")
@click.option("--data", "data_spec", default=None,
              help="test data (default: the data the checkpoint was trained on)")
@click.option("--n", type=POSITIVE, default=None, help="evaluate the first N test images (default all)")
@click.option("--suite", "suites", multiple=True, help="metric suite(s): see `energybench list suites`")
@click.option("--metric", "metrics", multiple=True, help="single metric(s), repeatable")
@click.option("--eps", default=None, help="L-inf budget for attack metrics, e.g. 8/255 (default protocol)")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="records folder (default eval-<ckpt name>/ beside the checkpoint)")
@click.option("--device", default="auto", show_default=True)
@click.option("--batch-size", type=POSITIVE, default=256, show_default=True)
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--force", is_flag=True, help="recompute metrics that are already recorded")
@click.option("--inception-weights", default=None,
              help="torch-fidelity Inception weights for is/fid: a path, or 'download' when online")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
              help="override a metric protocol value, e.g. step_size=1/255, n_per_class=5000 or "
                   "probes=20 (repeatable)")
@click.option("--train-data", default=None,
              help="training data for metrics that need it (class-Gaussian SGLD init, FID, "
                   "memorization) when the model does not name its own (.pt2 programs)")
def eval_cmd(model_path, data_spec, n, suites, metrics, eps, out_dir, device, batch_size, seed, force,
             inception_weights, params, train_data):
    """Evaluate a model; one JSON record per metric, then a summary table."""
    from energybench.attacks import parse_eps
    from energybench.evaluate import check_param_keys, default_out_dir, evaluate
    from energybench.metrics import resolve_metrics
    from energybench.results import format_summary, write_text_atomic

    names = resolve_metrics(list(suites), list(metrics))
    raw = {}
    for item in params:
        if "=" not in item:
            raise UserError(f"--param {item!r} must look like KEY=VALUE (e.g. n_per_class=50)")
        key, value = item.split("=", 1)
        raw[key.strip()] = value.strip()
    check_param_keys(names, raw)
    overrides = {**raw, "eps": parse_eps(eps) if eps is not None else raw.get("eps"),
                 "inception_weights": inception_weights}
    refused: dict[str, str] = {}
    records = evaluate(model_path, names, data_spec=data_spec, n=n, out_dir=out_dir,
                       device=_device(device), batch_size=batch_size, seed=seed,
                       overrides=overrides, force=force, log=lambda m: _echo(m, err=True),
                       refused=refused if len(names) > 1 else None, train_data=train_data)
    out = out_dir or default_out_dir(model_path)
    if records:
        table = format_summary(records)
        not_run = "".join(f"\n- {k}: not computed ({v})" for k, v in refused.items())
        write_text_atomic(f"# {model_path}\n\nData: {records[0]['data']['label']}\n\n{table}\n{not_run}\n",
                          Path(out) / "summary.md")
        _echo(f"\n{model_path} on {records[0]['data']['label']}\n{table}\n\nrecords: {out}")
    if refused:
        raise UserError(f"not computed: {', '.join(refused)} (first reason: {next(iter(refused.values()))})")


# ----------------------------------------------------------------------------- sample


@cli.command()
@click.option("--ckpt", "model_path", required=True, type=click.Path(path_type=Path))
@click.option("--n-per-class", type=POSITIVE, default=10, show_default=True)
@click.option("--mode", default="joint", show_default=True,
              type=click.Choice(["joint", "conditional", "marginal"]),
              help="joint (eq. 17, E(x,y)), conditional (eq. 16, E(x,y)-E(x)), marginal (E(x))")
@click.option("--init", "init", default="class-gaussian", show_default=True,
              type=click.Choice(["uniform", "class-gaussian", "buffer"]),
              help="uniform, class-gaussian (fitted on the training data) or buffer (checkpoint's)")
@click.option("--steps", type=click.IntRange(min=0), default=100, show_default=True)
@click.option("--step-size", type=FiniteFloat(), default=0.25, show_default=True, help="pixel units")
@click.option("--noise", type=FiniteFloat(), default=0.005, show_default=True, help="pixel units")
@click.option("--train-data", default=None, help="training data for class-gaussian (default: the checkpoint's)")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="folder for samples.npz and grid PNGs (default samples-<ckpt name>/)")
@click.option("--device", default="auto", show_default=True)
@click.option("--seed", type=SEED, default=0, show_default=True)
def sample(model_path, n_per_class, mode, init, steps, step_size, noise, train_data, out_dir, device, seed):
    """Generate images by SGLD; saves samples.npz and one PNG grid per class plus an overview."""
    from energybench.sample_io import sample_model

    out = sample_model(model_path, n_per_class=n_per_class, mode=mode, init=init, steps=steps,
                       step_size=step_size, noise_scale=noise, train_data=train_data,
                       out_dir=out_dir, device=_device(device), seed=seed)
    _echo(f"samples: {out}")


# ----------------------------------------------------------------------------- report


DEFAULT_RESULTS = Path("reports/reproduce-smoke/records")


@cli.command()
@click.option("--table", "tables", multiple=True, required=True,
              help="table name (see `energybench list tables`), or 'all'; repeatable")
@click.option("--results", "results", multiple=True, type=click.Path(path_type=Path),
              help=f"folders or files of result records (default {DEFAULT_RESULTS} if present); repeatable")
@click.option("--format", "fmt", default="md", show_default=True, type=click.Choice(["md", "tex", "csv"]))
@click.option("--out", "out_file", type=click.Path(path_type=Path), default=None,
              help="write to this file instead of printing")
def report(tables, results, fmt, out_file):
    """A paper table with published numbers beside measured ones."""
    from energybench.report import build, collect_records, load_table, render, table_names
    from energybench.results import check_writable_dir, write_text_atomic

    names = table_names() if "all" in tables else list(tables)
    for name in names:
        load_table(name)  # unknown names fail before anything else is said
    if out_file is not None:
        if out_file.is_dir():
            raise UserError(f"--out {out_file} is a folder; give a file name, e.g. {out_file / 'table.md'}")
        check_writable_dir(out_file.parent)
    if not results:
        if not DEFAULT_RESULTS.exists():
            _echo(f"note: no --results given and {DEFAULT_RESULTS} does not exist here: "
                       "every measured cell is missing", err=True)
        results = [DEFAULT_RESULTS] if DEFAULT_RESULTS.exists() else []
    records = collect_records(results)
    text = "\n".join(render(build(load_table(name), records), fmt) for name in names)
    if out_file is None:
        _echo(text, nl=False)
    else:
        write_text_atomic(text, out_file)
        _echo(f"wrote {out_file}", err=True)


@cli.command()
@click.option("--preset", default="smoke", show_default=True, type=click.Choice(["ci", "smoke", "paper"]),
              help="ci, smoke (CPU) or paper (GPU)")
@click.option("--only", default=None, help="comma-separated recipes to train and evaluate (default all)")
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
def reproduce(preset, only, data_spec, data_cifar100, out_dir, runs_dir, device, inception_weights):
    """Train the tables' models, evaluate them and render every table and figure with an index."""
    from energybench.data import resolve_source
    from energybench.reproduce import reproduce as run_reproduction

    if data_cifar100 != "cifar100":  # given explicitly: it must exist (the default may be absent)
        resolve_source(data_cifar100)
    index = run_reproduction(preset, out_dir or Path(f"reports/reproduce-{preset}"),
                             runs_dir or Path(f"runs/reproduce-{preset}"),
                             {"cifar10": data_spec, "cifar100": data_cifar100}, _device(device),
                             only=only, inception_weights=inception_weights,
                             log=lambda m: _echo(m, err=True))
    _echo(f"index page: {index}")


# ----------------------------------------------------------------------------- list


@cli.command("list")
@click.argument("what", required=False,
                type=click.Choice(["recipes", "models", "metrics", "suites", "presets", "tables"]))
def list_cmd(what):
    """Show recipes, models, metrics, suites and presets."""
    from energybench.metrics import METRICS, SUITES
    from energybench.models import MODELS
    from energybench.recipes import RECIPES
    from energybench.report import load_table, table_names

    sections = {
        "recipes": [(n, RECIPES.get(n).summary) for n in RECIPES.names()],
        "models": [(n, (MODELS.get(n).__doc__ or "").strip().splitlines()[0]
                    if MODELS.get(n).__doc__ else "") for n in MODELS.names()],
        "metrics": [(n, METRICS.get(n).summary) for n in METRICS.names()],
        "suites": [(n, ", ".join(m)) for n, m in sorted(SUITES.items())],
        "presets": [(n, ", ".join(RECIPES.get(n).presets())) for n in RECIPES.names()],
        "tables": [(n, load_table(n)["title"]) for n in table_names()],
    }
    for name, rows in sections.items():
        if what not in (None, name):
            continue
        _echo(f"{name}:")
        width = max(len(r[0]) for r in rows)
        for key, text in rows:
            _echo(f"  {key.ljust(width)}  {text}")


# ----------------------------------------------------------------------------- data


@cli.group()
def data():
    """Inspect, import and verify datasets."""


@data.command("info")
@click.argument("spec", required=False)
def data_info(spec):
    """Where SPEC resolves to, its splits, sizes and classes (default: cifar10 in the data home)."""
    from energybench import data as datalib

    source = datalib.resolve_source(spec)
    splits = datalib.available_splits(spec)
    loaded = [d for d in splits.values() if not isinstance(d, UserError)]
    if not loaded:  # nothing readable: say why, once
        raise splits["train"] if "has no train split" not in str(splits["train"]) else splits["test"]
    _echo(f"source: {source.kind} {source.path}")
    _echo(f"data home: {datalib.data_home()}   cache: {datalib.cache_dir()}")
    for split, d in splits.items():
        if isinstance(d, UserError):
            _echo(f"{split}: none ({d})")
            continue
        _echo(f"{split}: {len(d)} images {tuple(d.images.shape[1:])} uint8, "
                   f"{d.num_classes} classes; {d.source.get('label')}")
    _echo(f"classes: {', '.join(loaded[0].classes)}")


@data.command("import")
@click.argument("spec")
@click.option("--name", default="cifar10", show_default=True, help="dataset name in the data home")
@click.option("--download", is_flag=True, help="let torchvision download SPEC (cifar10/cifar100)")
def data_import(spec, name, download):
    """Decode SPEC into the data home as NAME.npz, so `--data NAME` (the default) finds it."""
    import re

    from energybench import data as datalib

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise UserError(f"--name must be a plain name like cifar10 (letters, digits, _ . -), got {name!r}")
    if download and spec in datalib.TORCHVISION_FOLDERS:
        spec = str(datalib.download_torchvision(spec))
    path = datalib.import_source(spec, name)
    _echo(f"imported {spec} -> {path}")


@data.command("verify")
@click.argument("spec", required=False)
@click.option("--reference", type=click.Path(exists=True, path_type=Path), default=None,
              help="an .npz of exact test images to compare the first test images against")
def data_verify(spec, reference):
    """Check counts, shapes, labels and checksums of SPEC; optionally compare with exact pixels."""
    from energybench.data_checks import verify_source

    report, ok = verify_source(spec, reference)
    _echo(report)
    if not ok:
        raise UserError(f"{spec or 'cifar10'} failed verification (see above)")


def _echo(text="", err: bool = False, nl: bool = True) -> None:
    """click.echo, with path bytes that are not UTF-8 shown as \\xNN escapes, not an exception."""
    click.echo(str(text).encode("utf-8", "backslashreplace").decode("utf-8"), err=err, nl=nl)


def _say_error(message: str) -> None:
    """One line on stderr, whatever the message holds (newlines, undecodable path bytes)."""
    _echo(f"energybench: error: {' '.join(str(message).split())}", err=True)


def _os_error_text(exc: OSError) -> str:
    where = f" ({exc.filename})" if exc.filename else ""
    fix = {28: "free some disk space", 27: "free some disk space", 13: "choose a writable location",
           30: "choose a writable location", 36: "use a shorter path"}.get(exc.errno, "check the path")
    return f"{exc.strerror or exc}{where}; {fix} and run the command again"


def _terminate(signum, frame):
    raise KeyboardInterrupt  # so `finally` blocks remove temporary files and release locks


def main(argv=None):
    import signal

    previous = signal.signal(signal.SIGTERM, _terminate) if _main_thread() else None
    try:
        cli.main(args=argv, prog_name="energybench", standalone_mode=False)
    except UserError as exc:
        _say_error(str(exc))
        sys.exit(2)
    except click.exceptions.Abort:
        _echo("energybench: aborted", err=True)
        sys.exit(130)
    except click.UsageError as exc:
        hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
        _say_error(f"{exc.format_message()}{hint}")
        sys.exit(2)
    except click.ClickException as exc:
        _say_error(exc.format_message())
        sys.exit(exc.exit_code)
    except OSError as exc:  # disk full, permissions, a path that is not what it should be
        _say_error(_os_error_text(exc))
        sys.exit(2)
    except KeyboardInterrupt:
        _echo("energybench: interrupted", err=True)
        sys.exit(130)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
