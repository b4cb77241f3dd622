"""Command line: `energybench train | eval | list | data`.

Every user error (missing data, unknown name, bad option, corrupt checkpoint) ends in one line on
stderr and exit status 2.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import click

from energybench.core.errors import SomeNotComputed, UserError


def _device(name: str):
    from energybench.core.runtime import resolve_device

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


class RegistryChoice(click.Choice):
    """A click.Choice whose names come from a registry when the command runs (so help and
    errors list exactly what is registered, and the registries load only when needed)."""

    def __init__(self, kind: str):
        self.kind = kind
        super().__init__([])

    def convert(self, value, param, ctx):
        self.choices = registry_names(self.kind)
        return super().convert(value, param, ctx)

    def get_metavar(self, param, ctx=None):
        return f"[{self.kind.split('+')[0].rstrip('s').upper()}]"


def model_options(command):
    """--model (alias --ckpt) with RobustBench's --threat-model and --model-dir: any model handle."""
    for option in reversed([
        click.option("--model", "--ckpt", "model_spec", required=True,
                     help="an energybench checkpoint (.pt), a torch.export program (.pt2) or robustbench:NAME"),
        click.option("--threat-model", default="Linf", show_default=True,
                     type=click.Choice(["Linf", "L2", "corruptions"]),
                     help="RobustBench zoo section for robustbench:NAME"),
        click.option("--model-dir", type=click.Path(path_type=Path), default=None,
                     help="RobustBench weights folder: DIR/cifar10/<threat model>/NAME.pt (default ./models)"),
    ]):
        command = option(command)
    return command


def _registry_choice(kind: str) -> RegistryChoice:
    return RegistryChoice(kind)


def registry_names(kind: str) -> list[str]:
    """The registered names of a kind: recipes, metrics, suites, tables, presets or models."""
    if kind in ("recipes", "presets"):
        from energybench.training.recipes import RECIPES

        if kind == "recipes":
            return RECIPES.names()
        return sorted({p for n in RECIPES.names() for p in RECIPES.get(n).presets()})
    if kind in ("metrics", "suites"):
        from energybench.metrics import METRICS, SUITES

        return METRICS.names() if kind == "metrics" else sorted(SUITES)
    if kind in ("tables", "tables+all"):
        from energybench.reporting.report import table_names

        return table_names() + (["all"] if kind == "tables+all" else [])
    from energybench.models import MODELS

    return MODELS.names()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="energybench")
def cli():
    """Train and evaluate classifiers that are also energy-based generative models."""


# ----------------------------------------------------------------------------- train


@cli.command()
@click.argument("recipe", required=False, type=_registry_choice("recipes"))
@click.option("--preset", default="smoke", show_default=True, type=_registry_choice("presets"),
              help="paper or smoke")
@click.option("--config", "config_file", type=click.Path(path_type=Path), default=None,
              help="a TOML or YAML config (e.g. saved from --show-config); --set applies on top")
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
@click.option("--show-config", is_flag=True,
              help="print the resolved config as TOML and exit (save it and pass it to --config)")
def train(recipe, preset, config_file, overrides, data_spec, out_dir, device, resume, show_config):
    """Train RECIPE (see `energybench list recipes`) with a preset, a config file and overrides."""
    from dataclasses import replace

    from energybench.training.config import apply_overrides, dump_config, read_config_file
    from energybench.training.recipes import preset_config
    from energybench.training.trainer import train as run_training

    from_file: list[str] = []
    if config_file is not None:
        named, from_file = read_config_file(config_file)
        if recipe is not None and recipe != named:
            raise UserError(f"{config_file} is a config for {named}, not {recipe}; drop RECIPE or "
                            f"give a {recipe} config")
        recipe = named
        _registry_choice("recipes").convert(recipe, None, None)  # a misspelt name gets the list
    if recipe is None:
        raise UserError("name a RECIPE (see `energybench list recipes`) or give --config FILE")
    cfg = preset_config(recipe, preset)
    if data_spec is not None:
        cfg = replace(cfg, data=replace(cfg.data, source=data_spec))
    cfg = apply_overrides(cfg, from_file + list(overrides))
    if show_config:
        _echo(f"# energybench train {recipe} --preset {preset}: resolved config\n" + dump_config(cfg), nl=False)
        return
    from energybench.core.distributed import init_world, shutdown

    out_dir = out_dir or Path("runs") / f"{recipe}-{preset}"
    resume_overrides = from_file + list(overrides)
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
@model_options
@click.option("--data", "data_spec", default=None,
              help="test data (default: the data the checkpoint was trained on)")
@click.option("--n", "--images", "n", type=POSITIVE, default=None,
              help="evaluate the first N test images (default all); under torchrun write --images "
                   "(torchrun reads --n as its own --nnodes / --nproc-per-node)")
@click.option("--suite", "suites", multiple=True, type=_registry_choice("suites"),
              help="metric suite(s), repeatable")
@click.option("--metric", "metrics", multiple=True, type=_registry_choice("metrics"),
              help="single metric(s), repeatable")
@click.option("--eps", default=None, help="attack budget: L-inf as a pixel fraction (8/255), L2 as a length "
              "in pixel units (0.5); default: the norm's standard budget")
@click.option("--norm", type=click.Choice(["Linf", "L2"]), default=None,
              help="threat model of the attack metrics (default Linf; a RobustBench model: its "
                   "--threat-model)")
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
                   "memorization) when the model does not name its own (.pt2, RobustBench)")
@click.option("--format", "fmt", default="summary", show_default=True,
              type=click.Choice(["summary", "json", "robustbench"]),
              help="print a summary table, the records as JSON, or also write a RobustBench "
                   "leaderboard entry (needs the clean and autoattack metrics)")
@click.option("--json", "fmt", flag_value="json", help="same as --format json")
@click.option("--name", "entry_name_", default=None, help="with --format robustbench: the entry's name "
              "(default: the model file's name)")
@click.option("--authors", default="", help="with --format robustbench: the entry's authors")
@click.option("--venue", default="", help="with --format robustbench: where the model was published")
@click.option("--architecture", default=None, help="with --format robustbench: the architecture "
              "(default: the model's, e.g. WideResNet-28-10)")
@click.option("--link", default="", help="with --format robustbench: a link to the paper or code")
@click.option("--nonfinite", type=click.Choice(["refuse", "wrong"]), default="refuse", show_default=True,
              help="images whose logits are NaN or infinite: stop the metric (refuse), or count them "
                   "as wrong in clean, PGD and AutoAttack accuracy (the record says how many)")
def eval_cmd(model_spec, threat_model, model_dir, data_spec, n, suites, metrics, eps, norm, out_dir, device,
             batch_size, seed, force, inception_weights, params, train_data, fmt, entry_name_, authors, venue,
             architecture, link, nonfinite):
    """Evaluate a model; one JSON record per metric, then a summary table."""
    import json

    from energybench.core.distributed import init_world, shutdown
    from energybench.evaluation.runner import check_param_keys, evaluate
    from energybench.metrics import resolve_metrics
    from energybench.records.text import format_summary
    from energybench.records.collection import folder_summary
    from energybench.core.atomic import write_json_atomic, write_text_atomic

    names = resolve_metrics(list(suites), list(metrics))
    entry_fields = {"--name": entry_name_, "--authors": authors, "--venue": venue, "--architecture": architecture,
                    "--link": link}
    given = [flag for flag, value in entry_fields.items() if value]
    if given and fmt != "robustbench":
        raise UserError(f"{', '.join(given)} describe a RobustBench entry; add --format robustbench")
    if fmt == "robustbench":
        missing = [m for m in ("clean", "autoattack") if m not in names]
        if missing:
            raise UserError(f"--format robustbench needs the clean and autoattack metrics; add "
                            f"--metric {' --metric '.join(missing)}")
    raw = {}
    for item in params:
        if "=" not in item:
            raise UserError(f"--param {item!r} must look like KEY=VALUE (e.g. n_per_class=50)")
        key, value = item.split("=", 1)
        raw[key.strip()] = value.strip()
    check_param_keys(names, raw)
    overrides = {**raw, "eps": eps if eps is not None else raw.get("eps"), "norm": norm or raw.get("norm"),
                 "inception_weights": inception_weights}
    refused: dict[str, str] = {}
    world, dev = init_world(device)  # torchrun --nproc_per_node N -m energybench eval ...: images split
    say = (lambda m: _echo(m, err=True)) if world.is_main else (lambda m: None)
    try:
        records = evaluate(model_spec, names, data=data_spec, n=n, out_dir=out_dir,
                           device=dev, batch_size=batch_size, seed=seed,
                           overrides=overrides, force=force, log=say,
                           refused=refused if len(names) > 1 else None, train_data=train_data,
                           threat_model=threat_model, model_dir=model_dir, world=world,
                           nonfinite=nonfinite)
    finally:
        shutdown(world)
    if not world.is_main:
        return
    out = Path(records[0]["file"]).parent if records else out_dir
    if records:
        table = format_summary(records)
        not_run = "".join(f"\n- {k}: not computed ({v})" for k, v in refused.items())
        write_text_atomic(folder_summary(out, str(model_spec)) + (f"\nNot computed in the last run:{not_run}\n"
                                                                  if refused else ""), out / "summary.md")
        if fmt == "json":
            _echo(json.dumps(records, indent=1))
        else:
            _echo(f"\n{model_spec} on {records[0]['data']['label']}\n{table}\n\nrecords: {out}")
    if refused:
        raise SomeNotComputed(f"not computed: {', '.join(refused)} (first reason: {next(iter(refused.values()))}); "
                              f"the other metrics are recorded in {out}")
    if fmt == "robustbench":
        from energybench.handles.zoo import architecture_name, entry_name, leaderboard_entry

        model = records[0]["model"]
        name = entry_name_ or entry_name(model)
        entry = leaderboard_entry(records, name, architecture or architecture_name(model),
                                  threat_model=threat_model if model["kind"] == "robustbench" else None,
                                  additional_data=False if model["kind"] == "checkpoint" else None,
                                  authors=authors, venue=venue, link=link)
        path = out / f"robustbench-{re.sub(r'[^A-Za-z0-9_.-]+', '_', name).strip('_') or 'entry'}.json"
        write_json_atomic(entry, path)
        _echo(f"RobustBench leaderboard entry: {path}")


# ----------------------------------------------------------------------------- sample


@cli.command()
@model_options
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
def sample(model_spec, threat_model, model_dir, n_per_class, mode, init, steps, step_size, noise, train_data,
           out_dir, device, seed):
    """Generate images by SGLD: samples.npz, one PNG grid per class, and grid.png/.pdf (a row per
    class, named)."""
    from energybench.core.distributed import init_world, shutdown
    from energybench.workflows.sample import sample_model

    world, dev = init_world(device)  # torchrun --nproc_per_node N -m energybench sample ...: batches split
    try:
        out = sample_model(model_spec, n_per_class=n_per_class, mode=mode, init=init, steps=steps,
                           step_size=step_size, noise=noise, train_data=train_data,
                           out_dir=out_dir, device=dev, seed=seed, threat_model=threat_model,
                           model_dir=model_dir, world=world)
    finally:
        shutdown(world)
    if world.is_main:
        _echo(f"samples: {out}")


# ----------------------------------------------------------------------------- report


# The committed smoke reproduction, found from the package's own location (a source checkout), not
# from the current folder.
DEFAULT_RESULTS = Path(__file__).resolve().parent.parent / "reports" / "reproduce-smoke" / "records"


@cli.command()
@click.option("--table", "tables", multiple=True, required=True, type=_registry_choice("tables+all"),
              help="table name (see `energybench list tables`), or 'all'; repeatable")
@click.option("--results", "results", multiple=True, type=click.Path(path_type=Path),
              help=f"folders or files of result records (default {DEFAULT_RESULTS} if present); repeatable")
@click.option("--format", "fmt", default="md", show_default=True, type=click.Choice(["md", "tex", "csv"]))
@click.option("--out", "out_file", type=click.Path(path_type=Path), default=None,
              help="write to this file instead of printing")
@click.option("--data", "data_label", default=None,
              help="use only records measured on this test set, named as records name it "
                   "(e.g. 'CIFAR-10 (JPEG q75 copy)'); a table never mixes two")
def report(tables, results, fmt, out_file, data_label):
    """A paper table with published numbers beside measured ones."""
    from energybench.reporting.report import build, collect_records, load_table, render, select_data, table_names
    from energybench.core.atomic import check_writable_dir, write_text_atomic

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
    if data_label is not None:
        records = select_data(records, data_label)
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
@click.option("--seeds", type=POSITIVE, default=None,
              help="training seeds per run (default: ci 1, smoke 3, paper 5); tables give mean ± std")
@click.option("--plan", "make_plan", is_flag=True,
              help="write OUT/plan.json (the independent jobs) and OUT/slurm.sh (a SLURM array running "
                   "each under torchrun) instead of running anything")
@click.option("--job", "job_id", default=None, metavar="ID",
              help="run one job of the plan (with the plan's --preset, --only, --seeds, --out, --runs)")
def reproduce(preset, only, data_spec, data_cifar100, out_dir, runs_dir, device, inception_weights, seeds,
              make_plan, job_id):
    """Train the tables' models, evaluate them and render every table and figure with an index.
    Under torchrun, training is data parallel and evaluation split over the processes."""
    from energybench.data.sources import resolve_source
    from energybench.core.distributed import init_world, shutdown
    from energybench.workflows.reproduce import reproduce as run_reproduction
    from energybench.workflows.reproduce import run_job, write_plan

    if data_cifar100 != "cifar100":  # given explicitly: it must exist (the default may be absent)
        resolve_source(data_cifar100)
    out_dir = out_dir or Path(f"reports/reproduce-{preset}")
    runs_dir = runs_dir or Path(f"runs/reproduce-{preset}")
    data = {"cifar10": data_spec, "cifar100": data_cifar100}
    if make_plan:
        if job_id is not None:
            raise UserError("--plan writes the jobs; --job runs one: give one of them")
        resolve_source(data_spec)
        path = write_plan(preset, out_dir, runs_dir, data, only=only, seeds=seeds,
                          inception_weights=inception_weights, device=device)
        _echo(f"plan: {path}\nSLURM array: {path.parent / 'slurm.sh'}")
        return
    world, dev = init_world(device)
    say = (lambda m: _echo(m, err=True)) if world.is_main else (lambda m: None)
    try:
        if job_id is not None:
            run_job(job_id, preset, out_dir, runs_dir, data, dev, only=only, seeds=seeds,
                    inception_weights=inception_weights, log=say, world=world)
            if world.is_main:
                _echo(f"job {job_id}: done")
            return
        index = run_reproduction(preset, out_dir, runs_dir, data, dev, only=only,
                                 inception_weights=inception_weights, log=say, seeds=seeds, world=world)
    finally:
        shutdown(world)
    if world.is_main:
        _echo(f"index page: {index}")


# ----------------------------------------------------------------------------- plot


@cli.command()
@click.argument("records", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="folder for the figures (default: beside each record)")
@click.option("--format", "formats", multiple=True, type=click.Choice(["png", "pdf", "svg"]),
              help="figure format(s), repeatable (default png and pdf; PNG at 300 dpi)")
@click.option("--compare", "compare", default=None, metavar="NAME",
              help="also draw NAME.png/.pdf in --out (default: the current folder) from every given "
                   "record of one metric: robust-curve overlaid, energy-hist side by side")
@click.option("--shared-x", is_flag=True, help="with --compare on energy-hist: one energy axis for every panel")
def plot(records, out_dir, formats, compare, shared_x):
    """Redraw the figures of RECORDS (record .json files or folders of them) from their saved raw
    data, without recomputing anything."""
    from energybench.metrics import figure_drawer, figure_metrics
    from energybench.records.figures import FORMATS, draw_record
    from energybench.reporting.plotting import COMPARISONS, draw_comparison
    from energybench.core.atomic import check_writable_dir

    files = []
    for item in records:
        if item.is_dir():
            files += sorted(item.glob("*.json"))
        elif item.is_file():
            files.append(item)
        else:
            raise UserError(f"{item} does not exist; give record .json files or folders of them")
    drawable = [f for f in files if figure_drawer(_metric_of(f) or "")]  # other JSON (e.g. AutoAttack state) is skipped
    if not drawable:
        raise UserError(f"no record with a figure among {len(files)} file(s); figures belong to "
                        f"{', '.join(sorted(figure_metrics()))}")
    if out_dir is not None:
        check_writable_dir(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
    if compare is not None:
        if Path(compare).name != compare or not compare.strip(". "):
            raise UserError(f"--compare {compare!r} must be a plain file name (no folders); use --out for the folder")
        chosen = [f for f in drawable if _metric_of(f) in COMPARISONS]
        if len(chosen) < 2:
            raise UserError(f"--compare needs at least two records of {', '.join(COMPARISONS)}; got {len(chosen)}")
        folder = out_dir or Path(".")
        check_writable_dir(folder)
        for path in draw_comparison(chosen, folder / compare, tuple(formats) or FORMATS, shared_x=shared_x):
            _echo(str(path))
    for record in drawable:
        for path in draw_record(record, figure_drawer(_metric_of(record)), out_dir, tuple(formats) or FORMATS):
            _echo(str(path))


def _metric_of(path: Path) -> str | None:
    """The metric a record file is of, or None for any other JSON (e.g. AutoAttack's state)."""
    import json

    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        raise UserError(f"cannot read {path} as a JSON record") from None
    metric = record.get("metric") if isinstance(record, dict) and "record_version" in record else None
    return metric if isinstance(metric, str) else None


# ----------------------------------------------------------------------------- list


@cli.command("list")
@click.argument("what", required=False,
                type=click.Choice(["recipes", "models", "metrics", "suites", "presets", "tables"]))
@click.option("--json", "as_json", is_flag=True, help="print {section: {name: description}} as JSON")
def list_cmd(what, as_json):
    """Show recipes, models, metrics, suites and presets."""
    from energybench.metrics import METRICS, SUITES
    from energybench.models import MODELS
    from energybench.training.recipes import RECIPES
    from energybench.reporting.report import load_table, table_names

    sections = {
        "recipes": [(n, RECIPES.get(n).summary) for n in RECIPES.names()],
        "models": [(n, (MODELS.get(n).__doc__ or "").strip().splitlines()[0]
                    if MODELS.get(n).__doc__ else "") for n in MODELS.names()],
        "metrics": [(n, METRICS.get(n).summary) for n in METRICS.names()],
        "suites": [(n, ", ".join(m)) for n, m in sorted(SUITES.items())],
        "presets": [(n, ", ".join(RECIPES.get(n).presets())) for n in RECIPES.names()],
        "tables": [(n, load_table(n)["title"]) for n in table_names()],
    }
    sections = {k: v for k, v in sections.items() if what in (None, k)}
    if as_json:
        import json

        _echo(json.dumps({k: dict(v) for k, v in sections.items()}, indent=1))
        return
    for name, rows in sections.items():
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
    from energybench.data import sources as datalib

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

    from energybench.data import sources as datalib

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
    from energybench.data.verify import verify_source

    report, ok = verify_source(spec, reference)
    _echo(report)
    if not ok:
        raise UserError(f"{spec or 'cifar10'} failed verification (see above)")


def _echo(text="", err: bool = False, nl: bool = True) -> None:
    """click.echo, with path bytes that are not UTF-8 shown as \\xNN escapes, not an exception."""
    click.echo(str(text).encode("utf-8", "backslashreplace").decode("utf-8"), err=err, nl=nl)


def _say_error(message: str, kind: str = "error") -> None:
    """One line on stderr, whatever the message holds (newlines, undecodable path bytes)."""
    _echo(f"energybench: {kind}: {' '.join(str(message).split())}", err=True)


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
    except UserError as exc:  # 2: bad input; 3: finished, but some metrics could not run here
        _say_error(str(exc), "incomplete" if isinstance(exc, SomeNotComputed) else "error")
        sys.exit(exc.exit_status)
    except click.exceptions.Abort:
        _echo(_stopped_text("aborted"), err=True)
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
        _echo(_stopped_text("interrupted"), err=True)
        sys.exit(130)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _stopped_text(what: str) -> str:
    """One line for a stop from outside: under torchrun the usual reason is that another rank
    failed and torchrun ended the others."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return (f"energybench: rank {os.environ.get('RANK', '?')} stopped by torchrun (another process of "
                f"the job failed or was stopped); run the same command again to resume: finished work is kept")
    return f"energybench: {what}"


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
