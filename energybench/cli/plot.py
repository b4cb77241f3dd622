"""`energybench plot RECORD...`: redraw records' figures from their raw data, or compare records.
"""

from __future__ import annotations

from pathlib import Path

import click

from energybench.cli.options import echo
from energybench.core.errors import UserError


@click.command()
@click.argument("records", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="folder for the figures (default: beside each record)")
@click.option("--format", "formats", multiple=True, type=click.Choice(["png", "pdf", "svg"]),
              help="figure format(s), repeatable (default png and pdf; PNG at 300 dpi)")
@click.option("--compare", "compare", default=None, metavar="NAME",
              help="also draw NAME.png/.pdf in --out (default: the current folder) from every given "
                   "record of one metric: robust-curve overlaid, energy-hist side by side, and records of "
                   "an accuracy metric such as pgd20 at several --eps as curves against the budget")
@click.option("--shared-x", is_flag=True, help="with --compare on energy-hist: one energy axis for every panel")
@click.option("--label", "labels", multiple=True, metavar="TEXT",
              help="the model's name in the figures, one per record in the order given (default: recipe "
                   "and checkpoint, or the model file's name)")
def plot(records, out_dir, formats, compare, shared_x, labels):
    """Redraw the figures of RECORDS (record .json files or folders of them) from their saved raw
    data, without recomputing anything."""
    files = []
    for item in records:
        if item.is_dir():
            files += sorted(item.glob("*.json"))
        elif item.is_file():
            files.append(item)
        else:
            raise UserError(f"{item} does not exist; give record .json files or folders of them")
    from energybench.core.atomic import check_writable_dir
    from energybench.metrics import figure_drawer, figure_metrics
    from energybench.records.figures import FORMATS, draw_record
    from energybench.reporting.plotting import COMPARISONS, draw_comparison

    metric_of = {f: _metric_of(f) for f in files}  # None: other JSON (e.g. AutoAttack state), skipped
    drawable = [f for f in files if figure_drawer(metric_of[f] or "")]
    comparable = [f for f in files if metric_of[f] in COMPARISONS or (metric_of[f] and _sweepable(f))]
    if not drawable and (compare is None or not comparable):
        raise UserError(f"no record with a figure among {len(files)} file(s); figures belong to "
                        f"{', '.join(sorted(figure_metrics()))} (with --compare, also accuracy records at "
                        f"several budgets)")
    shown = [f for f in files if f in drawable or (compare is not None and f in comparable)]
    if labels and len(labels) != len(shown):
        raise UserError(f"--label given {len(labels)} times for {len(shown)} record(s) drawn; give one "
                        f"per record, in the order of the records")
    named = dict(zip(shown, labels))
    if out_dir is not None:
        check_writable_dir(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
    if compare is not None:
        if Path(compare).name != compare or not compare.strip(". "):
            raise UserError(f"--compare {compare!r} must be a plain file name (no folders); use --out for the folder")
        chosen = comparable
        if len(chosen) < 2:
            raise UserError(f"--compare needs at least two records of {', '.join(COMPARISONS)}, or of one accuracy "
                            f"metric at several budgets; got {len(chosen)}")
        folder = out_dir or Path(".")
        check_writable_dir(folder)
        for path in draw_comparison(chosen, folder / compare, tuple(formats) or FORMATS, shared_x=shared_x,
                                    labels=named):
            echo(str(path))
    for record in drawable:
        for path in draw_record(record, figure_drawer(_metric_of(record)), out_dir, tuple(formats) or FORMATS,
                                label=named.get(record)):
            echo(str(path))


def _sweepable(path: Path) -> bool:
    from energybench.records.store import load_record
    from energybench.reporting.plotting import sweepable

    return sweepable(load_record(path))


def _metric_of(path: Path) -> str | None:
    """The metric a record file is of, or None for any other JSON (e.g. AutoAttack's state)."""
    from energybench.records.store import load_record

    record = load_record(path, required=False)
    return None if record is None else record["metric"]
