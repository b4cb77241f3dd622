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
@click.option("--resume", is_flag=True, help="continue the run in --out from its last checkpoint")
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
            click.echo(f"{key} = {value!r}")
        return
    from energybench.distributed import init_world, shutdown

    out_dir = out_dir or Path("runs") / f"{recipe}-{preset}"
    world, dev = init_world(device)  # torchrun --nproc_per_node N -m energybench train ...
    try:
        path = run_training(cfg, out_dir, dev, resume=resume, world=world)
    finally:
        shutdown(world)
    if world.is_main:
        click.echo(f"checkpoint: {path}")


# ----------------------------------------------------------------------------- eval


@cli.command("eval")
@click.option("--ckpt", "model_path", required=True, type=click.Path(path_type=Path),
              help="an energybench checkpoint (.pt) or a torch.export program (.pt2)")
@click.option("--data", "data_spec", default=None,
              help="test data (default: the data the checkpoint was trained on)")
@click.option("--n", type=int, default=None, help="evaluate the first N test images (default all)")
@click.option("--suite", "suites", multiple=True, help="metric suite(s): see `energybench list suites`")
@click.option("--metric", "metrics", multiple=True, help="single metric(s), repeatable")
@click.option("--eps", default=None, help="L-inf budget for attack metrics, e.g. 8/255 (default protocol)")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="records folder (default eval-<ckpt name>/ beside the checkpoint)")
@click.option("--device", default="auto", show_default=True)
@click.option("--batch-size", type=int, default=256, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--force", is_flag=True, help="recompute metrics that are already recorded")
@click.option("--inception-weights", default=None,
              help="torch-fidelity Inception weights for is/fid: a path, or 'download' when online")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
              help="override a metric protocol value, e.g. n_per_class=5000 or probes=20 (repeatable)")
def eval_cmd(model_path, data_spec, n, suites, metrics, eps, out_dir, device, batch_size, seed, force,
             inception_weights, params):
    """Evaluate a model; one JSON record per metric, then a summary table."""
    from energybench.attacks import parse_eps
    from energybench.evaluate import check_param_keys, default_out_dir, evaluate
    from energybench.metrics import resolve_metrics
    from energybench.results import format_summary

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
    if batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {batch_size}")
    refused: dict[str, str] = {}
    records = evaluate(model_path, names, data_spec=data_spec, n=n, out_dir=out_dir,
                       device=_device(device), batch_size=batch_size, seed=seed,
                       overrides=overrides, force=force, log=lambda m: click.echo(m, err=True),
                       refused=refused if len(names) > 1 else None)
    out = out_dir or default_out_dir(model_path)
    if records:
        table = format_summary(records)
        not_run = "".join(f"\n- {k}: not computed ({v})" for k, v in refused.items())
        (Path(out) / "summary.md").write_text(
            f"# {model_path}\n\nData: {records[0]['data']['label']}\n\n{table}\n{not_run}\n")
        click.echo(f"\n{model_path} on {records[0]['data']['label']}\n{table}\n\nrecords: {out}")
    if refused:
        raise UserError(f"not computed: {', '.join(refused)} (first reason: {next(iter(refused.values()))})")


# ----------------------------------------------------------------------------- sample


@cli.command()
@click.option("--ckpt", "model_path", required=True, type=click.Path(path_type=Path))
@click.option("--n-per-class", type=int, default=10, show_default=True)
@click.option("--mode", default="joint", show_default=True,
              help="joint (eq. 17, E(x,y)), conditional (eq. 16, E(x,y)-E(x)), marginal (E(x))")
@click.option("--init", "init", default="class-gaussian", show_default=True,
              help="uniform, class-gaussian (fitted on the training data) or buffer (checkpoint's)")
@click.option("--steps", type=int, default=100, show_default=True)
@click.option("--step-size", type=float, default=0.25, show_default=True, help="pixel units")
@click.option("--noise", type=float, default=0.005, show_default=True, help="pixel units")
@click.option("--train-data", default=None, help="training data for class-gaussian (default: the checkpoint's)")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="folder for samples.npz and grid PNGs (default samples-<ckpt name>/)")
@click.option("--device", default="auto", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def sample(model_path, n_per_class, mode, init, steps, step_size, noise, train_data, out_dir, device, seed):
    """Generate images by SGLD; saves samples.npz and one PNG grid per class plus an overview."""
    from energybench.sample_io import sample_model

    out = sample_model(model_path, n_per_class=n_per_class, mode=mode, init=init, steps=steps,
                       step_size=step_size, noise_scale=noise, train_data=train_data,
                       out_dir=out_dir, device=_device(device), seed=seed)
    click.echo(f"samples: {out}")


# ----------------------------------------------------------------------------- report


DEFAULT_RESULTS = Path("reports/reproduce-smoke/records")


@cli.command()
@click.option("--table", "tables", multiple=True, required=True,
              help="table name (see `energybench list tables`), or 'all'; repeatable")
@click.option("--results", "results", multiple=True, type=click.Path(path_type=Path),
              help=f"folders or files of result records (default {DEFAULT_RESULTS} if present); repeatable")
@click.option("--format", "fmt", default="md", show_default=True, help="md, tex or csv")
@click.option("--out", "out_file", type=click.Path(path_type=Path), default=None,
              help="write to this file instead of printing")
def report(tables, results, fmt, out_file):
    """A paper table with published numbers beside measured ones."""
    from energybench.report import FORMATS, build, collect_records, load_table, render, table_names
    from energybench.results import write_text_atomic

    names = table_names() if "all" in tables else list(tables)
    for name in names:
        load_table(name)  # unknown names fail before anything else is said
    if fmt not in FORMATS:
        raise UserError(f"unknown format '{fmt}'; choose one of {', '.join(FORMATS)}")
    if not results:
        if not DEFAULT_RESULTS.exists():
            click.echo(f"note: no --results given and {DEFAULT_RESULTS} does not exist here: "
                       "every measured cell is missing", err=True)
        results = [DEFAULT_RESULTS] if DEFAULT_RESULTS.exists() else []
    records = collect_records(results)
    text = "\n".join(render(build(load_table(name), records), fmt) for name in names)
    if out_file is None:
        click.echo(text, nl=False)
    else:
        write_text_atomic(text, out_file)
        click.echo(f"wrote {out_file}", err=True)


@cli.command()
@click.option("--preset", default="smoke", show_default=True, help="ci, smoke (CPU) or paper (GPU)")
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
    from energybench.reproduce import reproduce as run_reproduction

    index = run_reproduction(preset, out_dir or Path(f"reports/reproduce-{preset}"),
                             runs_dir or Path(f"runs/reproduce-{preset}"),
                             {"cifar10": data_spec, "cifar100": data_cifar100}, _device(device),
                             only=only, inception_weights=inception_weights,
                             log=lambda m: click.echo(m, err=True))
    click.echo(f"index page: {index}")


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
        click.echo(f"{name}:")
        width = max(len(r[0]) for r in rows)
        for key, text in rows:
            click.echo(f"  {key.ljust(width)}  {text}")


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
    click.echo(f"source: {source.kind} {source.path}")
    click.echo(f"data home: {datalib.data_home()}   cache: {datalib.cache_dir()}")
    for split, d in datalib.available_splits(spec).items():
        if isinstance(d, UserError):
            click.echo(f"{split}: none ({d})")
            continue
        click.echo(f"{split}: {len(d)} images {tuple(d.images.shape[1:])} uint8, "
                   f"{d.num_classes} classes; {d.source.get('label')}")
        classes = d.classes
    click.echo(f"classes: {', '.join(classes)}")


@data.command("import")
@click.argument("spec")
@click.option("--name", default="cifar10", show_default=True, help="dataset name in the data home")
@click.option("--download", is_flag=True, help="let torchvision download SPEC (cifar10/cifar100)")
def data_import(spec, name, download):
    """Decode SPEC into the data home as NAME.npz, so `--data NAME` (the default) finds it."""
    from energybench import data as datalib

    if download and spec in datalib.TORCHVISION_FOLDERS:
        spec = str(datalib.download_torchvision(spec))
    path = datalib.import_source(spec, name)
    click.echo(f"imported {spec} -> {path}")


@data.command("verify")
@click.argument("spec", required=False)
@click.option("--reference", type=click.Path(exists=True, path_type=Path), default=None,
              help="an .npz of exact test images to compare the first test images against")
def data_verify(spec, reference):
    """Check counts, shapes, labels and checksums of SPEC; optionally compare with exact pixels."""
    from energybench.data_checks import verify_source

    report, ok = verify_source(spec, reference)
    click.echo(report)
    if not ok:
        raise UserError(f"{spec or 'cifar10'} failed verification (see above)")


def main(argv=None):
    try:
        cli.main(args=argv, prog_name="energybench", standalone_mode=False)
    except UserError as exc:
        click.echo(f"energybench: error: {exc}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("energybench: aborted", err=True)
        sys.exit(130)
    except click.UsageError as exc:
        hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
        click.echo(f"energybench: error: {exc.format_message()}{hint}", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        click.echo(f"energybench: error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("energybench: interrupted", err=True)
        sys.exit(130)
