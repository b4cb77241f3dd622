"""Options and parameter types the commands share, and output that survives any path bytes.
"""

from __future__ import annotations

from pathlib import Path

import click

from energybench.core.errors import render_options
from energybench.core.registry import declared_names


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


def registry_choice(kind: str) -> RegistryChoice:
    return RegistryChoice(kind)


# Where each kind of name is registered, and how (core.registry.declared_names reads them from the
# source, so a misspelt name is refused before torch loads; a registry is imported only if needed).
DECLARED = {"recipes": ("energybench.training.recipes", "register_recipe"),
            "metrics": ("energybench.metrics", "register_metric"),
            "suites": ("energybench.metrics", "register_suite"),
            "models": ("energybench.models", "MODELS.register")}


def registry_names(kind: str) -> list[str]:
    """The registered names of a kind: recipes, metrics, suites, tables, presets or models."""
    if kind in DECLARED:
        names = declared_names(*DECLARED[kind])
        if names is not None:
            return names
        return imported_registry_names(kind)
    if kind in ("tables", "tables+all"):
        from energybench.reporting.table_specs import table_names

        # "own": a table of the given records' own models (energybench.reporting.own_table)
        return table_names() + (["own", "all"] if kind == "tables+all" else [])
    from energybench.training.recipes import RECIPES

    return sorted({p for n in RECIPES.names() for p in RECIPES.get(n).presets()})


def imported_registry_names(kind: str) -> list[str]:
    """The names of a registry as importing its package registers them (torch loads)."""
    if kind == "recipes":
        from energybench.training.recipes import RECIPES

        return RECIPES.names()
    if kind in ("metrics", "suites"):
        from energybench.metrics import METRICS, SUITES

        return METRICS.names() if kind == "metrics" else sorted(SUITES)
    from energybench.models import MODELS

    return MODELS.names()


# The flag of each argument whose flag is not "--" + its name with dashes (core.errors.option).
FLAGS = {"out_dir": "--out", "runs_dir": "--runs", "model": "--model"}


def flag_word(name: str, value: str | None) -> str:
    """An option as the command line spells it: `--n`, `--data PATH`, `--param steps=100`."""
    flag = FLAGS.get(name, "--" + name.replace("_", "-"))
    return flag if value is None else f"{flag} {value}"


def cli_text(text: str) -> str:
    """Text from below the face with its options worded as flags."""
    return render_options(text, flag_word)


def echo(text="", err: bool = False, nl: bool = True) -> None:
    """click.echo of `cli_text(text)`, with path bytes that are not UTF-8 shown as \\xNN escapes,
    not an exception."""
    click.echo(cli_text(str(text)).encode("utf-8", "backslashreplace").decode("utf-8"), err=err, nl=nl)
