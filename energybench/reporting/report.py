"""Paper tables: published numbers beside measured ones (the `energybench report` command).

A table is data (energybench/reporting/tables/<name>.json): its entries (models: a recipe, its dataset and
recipe parameters, or no recipe for a method energybench does not train), its measures (which
metric and protocol fills a cell, display scale and precision), the published values as the paper
prints them, and which of those come from secondary sources.

Each measured cell is filled from result records (`energybench eval`, `energybench reproduce`)
matched by recipe, dataset, recipe parameters, metric and protocol. It names its scale (model,
epochs, training images, test images, data source) in a footnote and is marked † when that scale
differs from the paper's. A cell with no record says "missing"; a published number never fills it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from energybench.core.atomic import write_text_atomic
from energybench.core.errors import UserError, option
from energybench.reporting.cells import (
    MISSING, NO_RECIPE, NOT_REPORTED, Measured, Scale, fmt_number, measured_cell, public_measure,
    significance,
)
from energybench.reporting.render import FORMATS, Grid, render
from energybench.reporting.table_specs import load_table, table_names

# ----------------------------------------------------------------------------- the table

@dataclass
class _Notes:
    """What the cells of one table found that its footnotes must say."""

    scales: dict = field(default_factory=dict)  # Scale -> its footnote letter
    any_differs: bool = False
    rolled: dict = field(default_factory=dict)  # entry label -> (roll-backs, final lr scale)
    flagged: dict = field(default_factory=dict)  # "entry, measure" -> raised attack-failure checks
    public_protocols: dict = field(default_factory=dict)  # metric -> what it reproduces
    measured_cells: dict = field(default_factory=dict)  # measure -> entry -> (label, cell)
    seed_counts: set = field(default_factory=set)
    data_of_cells: dict = field(default_factory=dict)  # test data identity -> (first cell, data label, file)

    def letter(self, scale: "Scale") -> str:
        return self.scales.setdefault(scale, chr(ord("a") + len(self.scales)))


def _measured_text(m: "Measured", entry: dict, measure: dict, notes: _Notes, row: dict) -> str:
    """One measured cell's text (value ± spread [scale, marks]), noting what its footnotes need."""
    label = notes.letter(m.scale)
    notes.any_differs |= bool(m.differs)
    text = fmt_number(m.value, measure)
    if m.stderr is not None and m.stderr > 0:
        text += f" ± {fmt_number(m.stderr, measure, stderr=True)}"
    test_data = json.dumps({k: v for k, v in ((m.records[0].get("identity") or {}).get("data")
                                               or {}).items() if k != "subset"}, sort_keys=True)
    notes.data_of_cells.setdefault(test_data, (f"{entry['label']} / {measure['label']}",
                                               m.records[0]["data"].get("label"), m.file))
    seeds_text = f"; {len(m.seeds)} seeds" if len(m.seeds) > 1 else ""
    text += f" [{label}{'†' if m.differs else ''}{seeds_text}]"
    if len(m.seeds) > 1:
        notes.seed_counts.add(len(m.seeds))
    notes.measured_cells.setdefault(measure["key"], {})[entry["key"]] = (entry["label"], m)
    if m.rollbacks:
        text += "‡"
        notes.rolled[entry["label"]] = (m.rollbacks, m.lr_scale)
    if m.checks:
        text += " ⚑"
        notes.flagged[f"{entry['label']}, {measure['label']}"] = m.checks
    row.update(measured=m.value, stderr=m.stderr, scale=m.scale.describe(),
               differs_from_paper="; ".join(m.differs), rollbacks=m.rollbacks,
               attack_checks="; ".join(m.checks), seeds=len(m.seeds),
               spread="std over seeds" if len(m.seeds) > 1 else "stderr over test images")
    return text


def _public_text(records, entry: dict, measure: dict, public: dict, paper: dict, notes: _Notes, row: dict) -> str:
    """The ' · public: ...' part of a cell: the same measure under the published number's protocol."""
    p = measured_cell(records, entry, public, paper)
    notes.public_protocols[measure["public"]["metric"]] = measure["public"]["label"]
    if p is None:
        text = f" · public: {MISSING}"
    else:
        label = notes.letter(p.scale)
        text = f" · public: {fmt_number(p.value, measure)}"
        if p.stderr is not None and p.stderr > 0:
            text += f" ± {fmt_number(p.stderr, measure, stderr=True)}"
        text += f" [{label}]" + (" ⚑" if p.checks else "")
        if p.checks:
            notes.flagged[f"{entry['label']}, {measure['label']} (public protocol)"] = p.checks
    row.update(public_protocol=measure["public"]["metric"], public_measured=None if p is None else p.value)
    return text


def _cell(spec: dict, records: list[dict], entry: dict, measure: dict, notes: _Notes) -> tuple[tuple, dict]:
    """One (entry, measure) cell: (published text, measured text) and its tidy CSV row."""
    paper = spec.get("paper_scale")
    secondary = set(spec.get("secondary", []))
    published = spec["published"].get(entry["key"], {}).get(measure["key"])
    pub_text = NOT_REPORTED if published is None else published + ("§" if entry["key"] in secondary else "")
    row = {"table": spec["name"], "entry": entry["label"], "measure": measure["label"],
           "rollbacks": None, "attack_checks": None, "public_protocol": None, "public_measured": None,
           "seeds": None, "spread": None, "not_significant_vs": None,
           "display_scale": measure["scale"],
           "metric": measure["metric"], "published": published,
           "published_source": None if published is None else
           ("secondary" if entry["key"] in secondary else "paper")}
    if entry["recipe"] is None and "model_sha256" not in entry:  # a paper's model energybench cannot train
        row.update(measured=None, stderr=None, scale=None, differs_from_paper=None)
        return (pub_text, NO_RECIPE), row
    m = measured_cell(records, entry, measure, paper)
    if m is None:
        text = MISSING
        row.update(measured=None, stderr=None, scale=None, differs_from_paper=None)
    else:
        text = _measured_text(m, entry, measure, notes, row)
    public = public_measure(measure, entry)
    if public is not None:
        text += _public_text(records, entry, measure, public, paper, notes, row)
    return (pub_text, text), row


def _footnotes(spec: dict, notes: _Notes, same: list, untested: list) -> list[str]:
    paper = spec.get("paper_scale")
    lines = [f"[{label}] {scale.describe()}." for scale, label in notes.scales.items()]
    if notes.any_differs:
        lines.append(f"† measured at a scale that differs from the paper's ({paper['model']}, "
                     f"{', '.join(f'{v:,} {k} test images' for k, v in paper['test_images'].items())}): "
                     "compare orderings, not values.")
    for label, (count, lr_scale) in notes.rolled.items():
        lines.append(f"‡ {label}: the divergence guard rolled its training back {count} time"
                     f"{'s' if count > 1 else ''} (learning rate finally x{lr_scale:g}); see the run's events.jsonl.")
    if notes.seed_counts:
        lines.append(f"{' or '.join(map(str, sorted(notes.seed_counts)))} seeds: the mean ± standard deviation over "
                     f"models trained with different seeds (the other cells: value ± standard error over test images).")
    for measure_label, comparison in same:
        lines.append(f"≈ {measure_label}: {comparison.describe()}; not significantly different at 5%.")
    if untested:
        lines.append("Not tested for significance: " + "; ".join(untested) + ".")
    for cell, titles in notes.flagged.items():
        lines.append(f"⚑ {cell}: attack-failure checks raised ({'; '.join(titles)}): the robust accuracy "
                     f"may be overstated; the record's diagnostics give the evidence and what to do.")
    for metric, label in notes.public_protocols.items():
        lines.append(f"· public: the same measure under {label} (metric {metric}), the protocol the "
                     f"published number came from; the first number uses energybench's standard protocol.")
    if spec.get("secondary"):
        lines.append("§ published value taken from secondary notes of the paper, not its text.")
    if spec.get("paper") is None:
        lines.append(f"Value ± standard error over test images (robust-curve: bootstrap; several training seeds: "
                     f"their std). {MISSING}: no record of that model under that protocol.")
    else:
        lines.append(f"Published: {spec['paper']}. {NOT_REPORTED}: not reported. Measured: value ± standard "
                     f"error. {MISSING}: no record in the given results. {NO_RECIPE}: not an energybench recipe.")
    return lines + list(spec.get("notes", []))


def build(spec: dict, records: list[dict]) -> Grid:
    """A paper table from records: published beside measured for every (entry, measure), with the
    marks and footnotes the cells call for. Cells from two test sets are refused."""
    notes = _Notes()
    cells, tidy = {}, []
    for entry in spec["entries"]:
        for measure in spec["measures"]:
            cells[entry["key"], measure["key"]], row = _cell(spec, records, entry, measure, notes)
            tidy.append(row)
    if len(notes.data_of_cells) > 1:  # one table, one test set: cells from two would not compare
        (a, la, fa), (b, lb, fb) = list(notes.data_of_cells.values())[:2]
        raise UserError(f"table {spec['name']} would mix test sets: '{a}' comes from {la} ({fa}), '{b}' from "
                        f"{lb} ({fb}); pass {option('data', repr(la))} (or another) to keep one test set")
    same, untested, tested = _mark_indistinguishable(spec, notes.measured_cells, cells, tidy)
    by_entry = spec["rows_are"] == "entries"
    outer, inner = (spec["entries"], spec["measures"]) if by_entry else (spec["measures"], spec["entries"])
    sides = ("measured",) if spec.get("paper") is None else ("paper", "measured")
    header = ["Model" if by_entry else ""] + [f"{i['label']} ({side})" if len(sides) > 1 else i["label"]
                                              for i in inner for side in sides]
    rows = []
    for o in outer:
        row = [o["label"]]
        for i in inner:
            published, measured = cells[(o["key"], i["key"]) if by_entry else (i["key"], o["key"])]
            row.extend([published, measured] if len(sides) > 1 else [measured])
        rows.append(row)
    return Grid(spec["title"], header, rows, _footnotes(spec, notes, same, untested), tidy, tested)


def _mark_indistinguishable(spec, measured_cells, cells, tidy) -> tuple[list, list, list]:
    """Test every two entries of each measure on the same images; mark with ≈ the cells of each
    pair whose difference is not significant at 5%. Returns ([(measure label, comparison)] of the
    pairs not significant, [pairs not tested, with why], [(measure label, comparison)] of all)."""
    same, untested, tested = [], [], []
    labels = {m["key"]: m["label"] for m in spec["measures"]}
    rows = {(r["entry"], r["measure"]): r for r in tidy}
    for measure_key, by_entry in measured_cells.items():
        if len(by_entry) < 2:
            continue
        comparisons, skipped = significance(labels[measure_key], by_entry)
        untested += [f"{labels[measure_key]}: {line}" for line in skipped]
        keys = {label: key for key, (label, _) in by_entry.items()}
        tested += [(labels[measure_key], c) for c in comparisons]
        for c in comparisons:
            if c.significant:
                continue
            same.append((labels[measure_key], c))
            for label, other in ((c.first, c.second), (c.second, c.first)):
                pub, text = cells[keys[label], measure_key]
                if "≈" not in text:
                    cells[keys[label], measure_key] = (pub, text + " ≈")
                row = rows[(label, labels[measure_key])]
                row["not_significant_vs"] = "; ".join(filter(None, [row["not_significant_vs"], other]))
    return same, untested, tested


def _number(text) -> float | None:
    """A published value as the paper prints it ('85.16', '0.330§') as a float; None if not one."""
    try:
        return float(str(text).rstrip("§*† "))
    except (TypeError, ValueError):
        return None


def orderings(spec: dict, grid: Grid) -> list[str]:
    """Whether each ordering the paper prints between two entries of a measure holds in the
    measured numbers, and whether the measured difference is significant at 5% (the paired test of
    the table): one line per pair of entries with both numbers."""
    tidy = {(r["entry"], r["measure"]): r for r in grid.tidy}
    tests = {(m, frozenset((c.first, c.second))): c for m, c in grid.comparisons}
    lines = []
    for measure in spec["measures"]:
        label = measure["label"]
        rows = [(e["label"], _number(tidy[(e["label"], label)]["published"]), tidy[(e["label"], label)]["measured"])
                for e in spec["entries"]]
        rows = [(name, pub, got) for name, pub, got in rows if pub is not None and got is not None]
        for i, (a, pa, ma) in enumerate(rows):
            for b, pb, mb in rows[i + 1:]:
                if pa == pb:
                    continue
                high, low = (a, b) if pa > pb else (b, a)
                holds = (ma > mb) == (pa > pb) and ma != mb
                test = tests.get((label, frozenset((a, b))))
                verdict = ("holds" if holds else "reversed") + (
                    "" if test is None else (", significant" if test.significant else ", not significant"))
                detail = "" if test is None else f" ({test.detail})"
                lines.append(f"{spec['name']} {label}: paper {high} > {low} "
                             f"({max(pa, pb):g} vs {min(pa, pb):g}); measured "
                             f"{tidy[(high, label)]['measured']:.4g} vs {tidy[(low, label)]['measured']:.4g}: "
                             f"{verdict}{detail}")
    return lines


def write_tables(records: list[dict], folder: Path, names: list[str] | None = None) -> dict[str, str]:
    """Render each table from `records` into folder/<name>.{md,tex,csv}; returns the Markdown."""
    markdown = {}
    for name in names or table_names():
        grid = build(load_table(name), records)
        for fmt in FORMATS:
            write_text_atomic(render(grid, fmt), Path(folder) / f"{name}.{fmt}")
        markdown[name] = render(grid, "md")
    return markdown
