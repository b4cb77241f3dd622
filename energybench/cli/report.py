"""`energybench report --table NAME`: a paper table, published beside measured.
"""

from __future__ import annotations

from pathlib import Path

import click

from energybench.cli.options import echo, registry_choice
from energybench.core.errors import UserError

# The committed smoke reproduction, found from the package's own location (a source checkout), not
# from the current folder.
DEFAULT_RESULTS = Path(__file__).resolve().parents[2] / "reports" / "reproduce-smoke" / "records"


@click.command()
@click.option("--table", "tables", multiple=True, required=True, type=registry_choice("tables+all"),
              help="table name (see `energybench list tables`), 'own' (your records: every model x every "
                   "metric and protocol, with spreads and significance marks), or 'all'; repeatable")
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
    from energybench.core.atomic import check_writable_dir, write_text_atomic
    from energybench.reporting.cells import collect_records, select_data
    from energybench.reporting.own_table import OWN_TABLE, own_table
    from energybench.reporting.render import render
    from energybench.reporting.report import build
    from energybench.reporting.table_specs import load_table, table_names

    names = table_names() if "all" in tables else list(tables)
    for name in names:
        if name != OWN_TABLE:
            load_table(name)  # unknown names fail before anything else is said
    if out_file is not None:
        if out_file.is_dir():
            raise UserError(f"--out {out_file} is a folder; give a file name, e.g. {out_file / 'table.md'}")
        check_writable_dir(out_file.parent)
    if not results:
        if not DEFAULT_RESULTS.exists():
            echo(f"note: no --results given and {DEFAULT_RESULTS} does not exist here: "
                       "every measured cell is missing", err=True)
        results = [DEFAULT_RESULTS] if DEFAULT_RESULTS.exists() else []
    records = collect_records(results)
    if data_label is not None:
        records = select_data(records, data_label)
    text = "\n".join(render(build(own_table(records) if name == OWN_TABLE else load_table(name), records), fmt)
                     for name in names)
    foreign = {r["model"].get("sha256") for r in records if not r["model"].get("recipe")}
    if foreign and OWN_TABLE not in names:
        echo(f"note: {len(foreign)} model(s) in the results are no energybench recipe and fill no paper table; "
             f"see them with --table {OWN_TABLE}", err=True)
    if out_file is None:
        echo(text, nl=False)
    else:
        write_text_atomic(text, out_file)
        echo(f"wrote {out_file}", err=True)
