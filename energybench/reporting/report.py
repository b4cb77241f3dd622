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

import csv
import io
import json
import math
import statistics
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from energybench.core.errors import UserError
from energybench.records.outcomes import paired, read_outcomes
from energybench.records.store import record_problem
from energybench.records.text import raised_checks
from energybench.core.atomic import write_text_atomic
from energybench.core.stats import compare

FORMATS = ("md", "tex", "csv")
MISSING, NO_RECIPE, NOT_REPORTED = "missing", "no recipe", "–"
DATASET_CLASSES = {"cifar10": 10, "cifar100": 100}


# ----------------------------------------------------------------------------- table specs

def table_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("energybench.reporting.tables").iterdir()
                  if p.name.endswith(".json"))


def load_table(name: str) -> dict:
    """The spec of table `name`, checked for consistency."""
    if name not in table_names():
        raise UserError(f"unknown table '{name}'; known tables: {', '.join(table_names())}")
    spec = json.loads(resources.files("energybench.reporting.tables").joinpath(f"{name}.json").read_text())
    entries = {e["key"] for e in spec["entries"]}
    measures = {m["key"] for m in spec["measures"]}
    for entry, row in spec["published"].items():
        if entry not in entries or not set(row) <= measures:
            raise ValueError(f"table {name}: published values name unknown entries or measures")
    for entry in spec.get("secondary", []):
        if entry not in entries:
            raise ValueError(f"table {name}: secondary source for unknown entry {entry}")
    return spec


def run_name(entry: dict) -> str:
    """The folder a reproduction trains this entry's model into."""
    return entry.get("run") or (entry["recipe"] + ("" if entry["dataset"] == "cifar10" else f"-{entry['dataset']}"))


# ----------------------------------------------------------------------------- records

def collect_records(paths) -> list[dict]:
    """Every result record (JSON with a value) under the given files or folders."""
    records = []
    for p in map(Path, paths):
        if not p.exists():
            raise UserError(f"results path {p} does not exist; give folders of `energybench eval` records")
        for f in (sorted(p.rglob("*.json")) if p.is_dir() else [p]):
            try:
                record = json.loads(f.read_text())
            except (OSError, UnicodeDecodeError, ValueError, RecursionError):
                raise UserError(f"{f} is not readable JSON; remove it or run its evaluation again") from None
            if not isinstance(record, dict) or "record_version" not in record:
                if not p.is_dir():
                    raise UserError(f"{f} is not an energybench record")
                continue  # other JSON in a folder of records (AutoAttack's state, status.json, a plan)
            problem = record_problem(record)
            if problem is not None:
                raise UserError(f"{f} is not a valid record: {problem}; remove it or run its evaluation again")
            record["_file"] = str(f)
            records.append(record)
    return records


def select_data(records: list[dict], label: str) -> list[dict]:
    """The records measured on the test set named `label` (as records name it, e.g. 'CIFAR-10
    (JPEG q75 copy)'; case and spacing ignored); none is a one-line error listing the names."""
    def norm(text) -> str:
        return " ".join(str(text).split()).casefold()

    kept = [r for r in records if norm((r.get("data") or {}).get("label")) == norm(label)]
    if not kept:
        present = sorted({str((r.get("data") or {}).get("label")) for r in records})
        raise UserError(f"no record was measured on test data {label!r}; the results hold: "
                        f"{', '.join(repr(p) for p in present) or 'no records'}")
    return kept


def _same(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isclose(a, b, abs_tol=1e-9)
    return a == b


def entry_protocol(entry: dict, measure: dict) -> dict:
    """What an entry changes in a measure's protocol (e.g. the sampler the paper used for that
    row: `"protocol": {"is": {"mode": "conditional"}}` in the entry)."""
    return dict((entry.get("protocol") or {}).get(measure["key"], {}))


def cell_protocol(measure: dict, entry: dict | None = None) -> dict:
    """The full protocol a cell asks for: the metric's defaults with the measure's values and the
    entry's own, written out (e.g. PGD's step follows eps), without estimator and incidental
    parameters."""
    from energybench.metrics import METRICS

    metric = METRICS.get(measure["metric"])
    values = {**measure.get("protocol", {}), **(entry_protocol(entry, measure) if entry else {})}
    params = metric.Params(**values)
    return metric.defining_params(metric(params).protocol())


def record_metric_version(record: dict) -> int:
    return (record.get("identity") or {}).get("metric_version", 1)


def matches(record: dict, entry: dict, measure: dict, protocol: dict | None = None) -> bool:
    """Whether a record measures this entry's model with this measure's metric and its whole
    protocol (every defining parameter equal, and the metric's current version). `protocol` is
    `cell_protocol(measure)`, passed in when the caller tests many records against one cell."""
    from energybench.metrics import METRICS

    model = record["model"]
    if record["metric"] != measure["metric"] or model.get("recipe") != entry["recipe"]:
        return False
    if record_metric_version(record) != METRICS.get(measure["metric"]).version:
        return False
    classes = ((model.get("model") or {}).get("kwargs") or {}).get("num_classes")
    if classes != DATASET_CLASSES[entry.get("dataset", "cifar10")]:
        return False
    params = model.get("recipe_params") or {}
    if any(k not in params or not _same(params[k], v) for k, v in entry.get("params", {}).items()):
        return False
    protocol = cell_protocol(measure, entry) if protocol is None else protocol
    return all(k in record["params"] and _same(record["params"][k], v) for k, v in protocol.items())


@dataclass(frozen=True)
class Scale:
    """What a measured number was measured at."""

    model: str
    parameters: int | None
    epochs: int | None
    train_images: int | None
    train_data: str | None
    test_images: int
    test_data: str | None
    estimator: str = ""  # e.g. "probes 4": how precisely the quantity was estimated
    checkpoint: str = ""  # "" for a run's last checkpoint, else how best.pt was selected

    @classmethod
    def of(cls, record: dict) -> "Scale":
        from energybench.metrics import METRICS

        model, training = record["model"], record["model"].get("training") or {}
        metric = METRICS.get(record["metric"])
        values = {k: record["params"][k] for k in metric.estimator_params if k in record["params"]}
        estimator = ", ".join(k.replace("_", " ") if v is True else f"{k.replace('_', ' ')} {v}"
                              for k, v in values.items() if v is not False)
        selected = model.get("checkpoint") or {}
        criterion = "clean accuracy" if selected.get("by") == "val_acc" else "PGD-10 robust accuracy"
        checkpoint = (f"best checkpoint (epoch {selected.get('epoch')}, by {criterion} on "
                      f"{selected.get('val_n')} held-out training images)" if selected.get("which") == "best" else "")
        return cls((model.get("model") or {}).get("name", model.get("kind", "?")), model.get("parameters"),
                   training.get("epochs"), training.get("train_images"), training.get("data"),
                   record["n"], record["data"].get("label"), estimator, checkpoint)

    def differences(self, paper: dict, dataset: str) -> list[str]:
        out = []
        if self.model != paper["model"]:
            out.append(f"model (paper: {paper['model']})")
        want = paper["test_images"].get(dataset)
        if want and self.test_images < want:
            out.append(f"test images (paper: {want:,})")
        if self.test_data and "JPEG" in self.test_data:
            out.append("JPEG-compressed data (paper: original pixels)")
        return out

    def describe(self) -> str:
        size = f" ({self.parameters:,} parameters)" if self.parameters else ""
        train = (f", {self.epochs} epochs on {self.train_images:,} training images of {self.train_data}"
                 if self.epochs is not None and self.train_images else "")
        estimator = f"; {self.estimator}" if self.estimator else ""
        estimator += f"; {self.checkpoint}" if self.checkpoint else ""
        return f"{self.model}{size}{train}; {self.test_images:,} test images of {self.test_data}{estimator}"


@dataclass(frozen=True)
class Measured:
    value: float  # in display units (scale applied); the mean over seeds when there are several
    stderr: float | None  # one run: standard error over test images; several seeds: their std
    scale: Scale
    differs: tuple[str, ...]
    file: str
    rollbacks: int = 0  # divergence-guard roll-backs of the run behind the number
    lr_scale: float = 1.0  # the learning-rate factor the roll-backs left
    checks: tuple[str, ...] = ()  # attack-failure checks raised by the record or the model's sanity record
    records: tuple = ()  # the records behind the number, one per training seed, by seed
    seeds: tuple = ()  # their training seeds


def attack_checks(record: dict, records: list[dict]) -> tuple[str, ...]:
    """Titles of the attack-failure checks raised on a robustness record: its own (always-on) and
    those of any `attack-sanity` record of the same model on the same test data."""
    if "diagnostics" not in record:
        return ()
    same = [r for r in records if r["metric"] == "attack-sanity"
            and r["model"].get("sha256") == record["model"].get("sha256")
            and (r.get("identity") or {}).get("data") == (record.get("identity") or {}).get("data")]
    titles = {}
    for r in [record, *same]:
        for name, check in raised_checks(r).items():
            titles.setdefault(name, check.get("title", name))
    return tuple(titles.values())


def training_seed(record: dict):
    return (record["model"].get("training") or {}).get("seed")


def _identity(record: dict, without=()) -> dict:
    identity = record.get("identity") or {"model_sha256": record["model"].get("sha256"), "n": record["n"],
                                          "params": record["params"]}
    return {k: v for k, v in identity.items() if k not in without}


def _differences(a: dict, b: dict) -> str:
    ia, ib = _identity(a), _identity(b)
    keys = sorted(k for k in set(ia) | set(ib) if ia.get(k) != ib.get(k))
    names = {"model_sha256": "model weights", "data": "test data", "n": "number of test images",
             "params": "protocol", "seed": "evaluation seed", "batch_size": "batch size",
             "device": "device type", "metric_version": "metric version"}
    return ", ".join(names.get(k, k) for k in keys) or "nothing recorded"


def measured_cell(records: list[dict], entry: dict, measure: dict, paper: dict) -> Measured | None:
    """The records filling this cell, or None: one record, or one per training seed of the same
    model evaluated in the same way (then the mean and standard deviation over seeds). Candidates
    that differ in anything else that changes the number (test data, n, protocol, evaluation seed,
    batch size, device type) are an error naming two of them."""
    protocol = cell_protocol(measure, entry)
    found = [r for r in records if matches(r, entry, measure, protocol)]
    if not found:
        return None
    unique = list({json.dumps(_identity(r), sort_keys=True): r for r in found}.values())  # copies count once
    seeds = [training_seed(r) for r in unique]
    same_evaluation = len({json.dumps(_identity(r, ("model_sha256",)), sort_keys=True) for r in unique}) == 1
    if len(unique) > 1 and not (same_evaluation and None not in seeds and len(set(seeds)) == len(seeds)):
        a, b = sorted(unique, key=lambda r: r["_file"])[:2]
        what = "training seed" if same_evaluation else _differences(a, b)
        raise UserError(f"{len(unique)} different records fit '{entry['label']}' / '{measure['label']}': "
                        f"{a['_file']} and {b['_file']} (they differ in {what}); pass --results folders "
                        f"holding one evaluation per table entry")
    unique.sort(key=lambda r: (training_seed(r) is None, training_seed(r) or 0))
    k = measure["scale"]
    values = [r["value"] * k for r in unique]
    first = unique[0]
    if len(unique) == 1:
        spread = None if first.get("stderr") is None else first["stderr"] * k
    else:
        spread = statistics.stdev(values)
    scale = Scale.of(first)
    training = [r["model"].get("training") or {} for r in unique]
    checks = tuple(dict.fromkeys(c for r in unique for c in attack_checks(r, records)))
    return Measured(statistics.fmean(values), spread, scale,
                    tuple(scale.differences(paper, entry.get("dataset", "cifar10"))), first["_file"],
                    sum(t.get("rollbacks", 0) for t in training), min(t.get("lr_scale", 1.0) for t in training),
                    checks, tuple(unique), tuple(training_seed(r) for r in unique))


def significance(measure: dict, cells: dict[str, tuple[str, Measured]]) -> tuple[list, list]:
    """Paired tests between every two entries of one measure, on their per-image outcomes (seed i
    of one with seed i of the other): (comparisons, pairs that could not be tested and why)."""
    field = None
    out, untested = [], []
    names = list(cells)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            (label_a, ma), (label_b, mb) = cells[a], cells[b]
            try:
                pairs_a, pairs_b = [], []
                for ra, rb in zip(ma.records, mb.records):
                    columns = read_outcomes(ra | {"file": ra["_file"]})
                    field = next(f for f in ("robust", "clean_correct", "score") if f in columns)
                    xa, xb = paired(ra | {"file": ra["_file"]}, rb | {"file": rb["_file"]}, field)
                    pairs_a.append(xa)
                    pairs_b.append(xb)
            except (UserError, StopIteration) as exc:
                untested.append(f"{label_a} vs {label_b}: {str(exc)[:120] or 'no per-image outcomes'}")
                continue
            out.append(compare(label_a, np.concatenate(pairs_a), label_b, np.concatenate(pairs_b)))
    return out, untested


def public_measure(measure: dict, entry: dict) -> dict | None:
    """The measure under the public protocol that produced this entry's published number, where
    the table names one (`public`: {"metric", "entries", "label"}); else None."""
    public = measure.get("public")
    if not public or entry["key"] not in public["entries"]:
        return None
    return {**measure, "metric": public["metric"], "protocol": {}}


# ----------------------------------------------------------------------------- the table

def fmt_number(value: float, measure: dict, stderr: bool = False) -> str:
    """`value` at the measure's precision (fixed decimals or significant digits; one significant
    digit fewer for a standard error)."""
    digits = measure["digits"] - (1 if stderr and measure["format"] == "sig" else 0)
    if not math.isfinite(value):
        return str(value)
    if measure["format"] == "sig" and value != 0:
        digits = max(0, digits - 1 - math.floor(math.log10(abs(value))))
    return f"{value:.{digits}f}"


@dataclass
class Grid:
    """A rendered table before formatting: header, body rows of text cells, footnotes."""

    title: str
    header: list[str]
    rows: list[list[str]]
    footnotes: list[str]
    tidy: list[dict]  # one dict per (entry, measure) for CSV
    comparisons: list = field(default_factory=list)  # (measure label, stats.Comparison) of every tested pair


def build(spec: dict, records: list[dict]) -> Grid:
    paper = spec["paper_scale"]
    scales: dict[Scale, str] = {}
    secondary = set(spec.get("secondary", []))
    any_differs = False
    rolled: dict[str, tuple[int, float]] = {}  # entry label -> (roll-backs, final lr scale)
    flagged: dict[str, tuple[str, ...]] = {}  # "entry, measure" -> raised attack-failure checks
    public_protocols: dict[str, str] = {}  # metric -> what it reproduces
    measured_cells: dict[str, dict[str, tuple[str, Measured]]] = {}  # measure -> entry -> (label, cell)
    seed_counts: set[int] = set()
    data_of_cells: dict[str, tuple] = {}  # test data identity -> (first cell, its data label, file)
    cells, tidy = {}, []
    for entry in spec["entries"]:
        for measure in spec["measures"]:
            published = spec["published"].get(entry["key"], {}).get(measure["key"])
            pub_text = NOT_REPORTED if published is None else published + ("§" if entry["key"] in secondary else "")
            row = {"table": spec["name"], "entry": entry["label"], "measure": measure["label"],
                   "rollbacks": None, "attack_checks": None, "public_protocol": None, "public_measured": None,
                   "seeds": None, "spread": None, "not_significant_vs": None,
                   "display_scale": measure["scale"],
                   "metric": measure["metric"], "published": published,
                   "published_source": None if published is None else
                   ("secondary" if entry["key"] in secondary else "paper")}
            if entry["recipe"] is None:
                text = NO_RECIPE
                row.update(measured=None, stderr=None, scale=None, differs_from_paper=None)
            else:
                m = measured_cell(records, entry, measure, paper)
                if m is None:
                    text = MISSING
                    row.update(measured=None, stderr=None, scale=None, differs_from_paper=None)
                else:
                    label = scales.setdefault(m.scale, chr(ord("a") + len(scales)))
                    any_differs |= bool(m.differs)
                    text = fmt_number(m.value, measure)
                    if m.stderr is not None and m.stderr > 0:
                        text += f" ± {fmt_number(m.stderr, measure, stderr=True)}"
                    test_data = json.dumps({k: v for k, v in ((m.records[0].get("identity") or {}).get("data")
                                                               or {}).items() if k != "subset"}, sort_keys=True)
                    data_of_cells.setdefault(test_data, (f"{entry['label']} / {measure['label']}",
                                                         m.records[0]["data"].get("label"), m.file))
                    seeds_text = f"; {len(m.seeds)} seeds" if len(m.seeds) > 1 else ""
                    text += f" [{label}{'†' if m.differs else ''}{seeds_text}]"
                    if len(m.seeds) > 1:
                        seed_counts.add(len(m.seeds))
                    measured_cells.setdefault(measure["key"], {})[entry["key"]] = (entry["label"], m)
                    if m.rollbacks:
                        text += "‡"
                        rolled[entry["label"]] = (m.rollbacks, m.lr_scale)
                    if m.checks:
                        text += " ⚑"
                        flagged[f"{entry['label']}, {measure['label']}"] = m.checks
                    row.update(measured=m.value, stderr=m.stderr, scale=m.scale.describe(),
                               differs_from_paper="; ".join(m.differs), rollbacks=m.rollbacks,
                               attack_checks="; ".join(m.checks), seeds=len(m.seeds),
                               spread="std over seeds" if len(m.seeds) > 1 else "stderr over test images")
                public = public_measure(measure, entry)
                if public is not None:
                    p = measured_cell(records, entry, public, paper)
                    public_protocols[measure["public"]["metric"]] = measure["public"]["label"]
                    if p is None:
                        text += f" · public: {MISSING}"
                    else:
                        label = scales.setdefault(p.scale, chr(ord("a") + len(scales)))
                        text += f" · public: {fmt_number(p.value, measure)}"
                        if p.stderr is not None and p.stderr > 0:
                            text += f" ± {fmt_number(p.stderr, measure, stderr=True)}"
                        text += f" [{label}]" + (" ⚑" if p.checks else "")
                        if p.checks:
                            flagged[f"{entry['label']}, {measure['label']} (public protocol)"] = p.checks
                    row.update(public_protocol=measure["public"]["metric"],
                               public_measured=None if p is None else p.value)
            cells[entry["key"], measure["key"]] = (pub_text, text)
            tidy.append(row)
    if len(data_of_cells) > 1:  # one table, one test set: cells from two would not compare
        (a, la, fa), (b, lb, fb) = list(data_of_cells.values())[:2]
        raise UserError(f"table {spec['name']} would mix test sets: '{a}' comes from {la} ({fa}), '{b}' from "
                        f"{lb} ({fb}); pass --data '{la}' (or another) to keep one test set")
    same, untested, tested = _mark_indistinguishable(spec, measured_cells, cells, tidy)
    by_entry = spec["rows_are"] == "entries"
    outer, inner = (spec["entries"], spec["measures"]) if by_entry else (spec["measures"], spec["entries"])
    header = ["Model" if by_entry else ""] + [f"{i['label']} ({side})" for i in inner for side in ("paper", "measured")]
    rows = []
    for o in outer:
        row = [o["label"]]
        for i in inner:
            row.extend(cells[(o["key"], i["key"]) if by_entry else (i["key"], o["key"])])
        rows.append(row)
    notes = []
    for scale, label in scales.items():
        notes.append(f"[{label}] {scale.describe()}.")
    if any_differs:
        notes.append(f"† measured at a scale that differs from the paper's ({paper['model']}, "
                     f"{', '.join(f'{v:,} {k} test images' for k, v in paper['test_images'].items())}): "
                     "compare orderings, not values.")
    for label, (count, lr_scale) in rolled.items():
        notes.append(f"‡ {label}: the divergence guard rolled its training back {count} time"
                     f"{'s' if count > 1 else ''} (learning rate finally x{lr_scale:g}); see the run's events.jsonl.")
    if seed_counts:
        notes.append(f"{' or '.join(map(str, sorted(seed_counts)))} seeds: the mean ± standard deviation over "
                     f"models trained with different seeds (the other cells: value ± standard error over test images).")
    for measure_label, comparison in same:
        notes.append(f"≈ {measure_label}: {comparison.describe()}; not significantly different at 5%.")
    if untested:
        notes.append("Not tested for significance: " + "; ".join(untested) + ".")
    for cell, titles in flagged.items():
        notes.append(f"⚑ {cell}: attack-failure checks raised ({'; '.join(titles)}): the robust accuracy "
                     f"may be overstated; the record's diagnostics give the evidence and what to do.")
    for metric, label in public_protocols.items():
        notes.append(f"· public: the same measure under {label} (metric {metric}), the protocol the "
                     f"published number came from; the first number uses energybench's standard protocol.")
    if secondary:
        notes.append("§ published value taken from secondary notes of the paper, not its text.")
    notes.append(f"Published: {spec['paper']}. {NOT_REPORTED}: not reported. Measured: value ± standard "
                 f"error. {MISSING}: no record in the given results. {NO_RECIPE}: not an energybench recipe.")
    notes.extend(spec.get("notes", []))
    return Grid(spec["title"], header, rows, notes, tidy, tested)


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


def render(grid: Grid, fmt: str) -> str:
    if fmt == "md":
        lines = [f"### {grid.title}", "", "| " + " | ".join(grid.header) + " |",
                 "|" + "|".join(["---"] + ["---:"] * (len(grid.header) - 1)) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in grid.rows]
        return "\n".join(lines + [""] + [f"- {n}" for n in grid.footnotes]) + "\n"
    if fmt == "tex":
        cols = "l" + "r" * (len(grid.header) - 1)
        lines = ["\\begin{table}[t]", "\\centering", f"\\caption{{{_tex(grid.title)}}}", "\\small",
                 f"\\begin{{tabular}}{{{cols}}}", "\\toprule", " & ".join(map(_tex, grid.header)) + " \\\\",
                 "\\midrule"]
        lines += [" & ".join(map(_tex, r)) + " \\\\" for r in grid.rows]
        lines += ["\\bottomrule", "\\end{tabular}", "\\par\\smallskip\\footnotesize"]
        lines += [_tex(n) + "\\\\" for n in grid.footnotes]
        return "\n".join(lines + ["\\end{table}"]) + "\n"
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(grid.tidy[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(grid.tidy)
        return out.getvalue()
    raise UserError(f"unknown format '{fmt}'; choose one of {', '.join(FORMATS)}")


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
        "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\^{}", "±": r"$\pm$", "†": r"$^\dagger$",
        "§": r"\S{}", "‡": r"$^\ddagger$", "⚑": r"$^{!}$", "·": r"$\cdot$", "≈": r"$\approx$", "↓": r"$\downarrow$", "↑": r"$\uparrow$", "σ": r"$\sigma$", "–": "--"}


def _tex(text: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in text)


def write_tables(records: list[dict], folder: Path, names: list[str] | None = None) -> dict[str, str]:
    """Render each table from `records` into folder/<name>.{md,tex,csv}; returns the Markdown."""
    markdown = {}
    for name in names or table_names():
        grid = build(load_table(name), records)
        for fmt in FORMATS:
            write_text_atomic(render(grid, fmt), Path(folder) / f"{name}.{fmt}")
        markdown[name] = render(grid, "md")
    return markdown
