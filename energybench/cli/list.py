"""`energybench list [recipes|metrics|suites|models|tables|presets]`.
"""

from __future__ import annotations

import click

from energybench.cli.options import echo
from energybench.core.validation import describe_fields


def _shown(default) -> str:
    """A default as a user writes it after --param KEY=: None is 'the protocol's own'."""
    if default is None:
        return "auto"
    return f"{default:g}" if isinstance(default, float) else str(default)


@click.command("list")
@click.argument("what", required=False,
                type=click.Choice(["recipes", "models", "metrics", "suites", "presets", "tables"]))
@click.option("--json", "as_json", is_flag=True, help="print {section: {name: description}} as JSON, and "
              "metric_params: {metric: {key: {default, type, range or choices}}} with the metrics")
def list_cmd(what, as_json):
    """Show recipes, models, metrics, suites and presets."""
    from energybench.metrics import METRICS, SUITES
    from energybench.models import MODELS
    from energybench.reporting.table_specs import load_table, table_names
    from energybench.training.recipes import RECIPES

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
    params = {n: describe_fields(METRICS.get(n).Params) for n in METRICS.names()} if "metrics" in sections else {}
    if as_json:
        import json

        out = {k: dict(v) for k, v in sections.items()}
        if params:  # each metric's --param keys: default, type, and range or choices
            out["metric_params"] = params
        echo(json.dumps(out, indent=1))
        return
    for name, rows in sections.items():
        echo(f"{name}:")
        width = max(len(r[0]) for r in rows)
        for key, text in rows:
            echo(f"  {key.ljust(width)}  {text}")
            if name == "metrics" and params.get(key):
                echo(f"  {' ' * width}  --param " + ", ".join(
                    f"{field}={_shown(entry['default'])}" for field, entry in params[key].items()))
