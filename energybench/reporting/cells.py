"""Table cells from records: which records fill a cell (recipe, dataset, recipe parameters, metric,
protocol, metric version), the measured value with its spread and scale, the attack checks it
raised, and the significance of the differences between entries.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from energybench.core.errors import UserError, option
from energybench.core.stats import compare
from energybench.records.outcomes import paired, read_outcomes
from energybench.records.store import load_record
from energybench.records.text import raised_checks
from energybench.reporting.table_specs import DATASET_CLASSES

MISSING = "missing"


NO_RECIPE = "no recipe"


NOT_REPORTED = "–"


def collect_records(paths) -> list[dict]:
    """Every result record (JSON with a value) under the given files or folders."""
    records = []
    for p in map(Path, paths):
        if not p.exists():
            raise UserError(f"results path {p} does not exist; give folders of `energybench eval` records")
        for f in (sorted(p.rglob("*.json")) if p.is_dir() else [p]):
            record = load_record(f, required=not p.is_dir())
            if record is None:
                continue  # other JSON in a folder of records (AutoAttack's state, status.json, a plan)
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


def entry_purification(entry: dict) -> dict | None:
    """The test-time purification an entry's model is evaluated behind (its `purification`: steps
    and any other energybench.energy.purification values), written out as records name it; None
    for a plain model."""
    from energybench.energy.purification import PurificationConfig

    given = entry.get("purification")
    return None if not given else PurificationConfig(**given).record()


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
    if record["metric"] != measure["metric"]:
        return False
    if record_metric_version(record) != METRICS.get(measure["metric"]).version:
        return False
    if "model_sha256" in entry:  # a table of the user's own models: the model file itself
        if model.get("sha256") != entry["model_sha256"]:
            return False
    else:
        if model.get("recipe") != entry["recipe"]:
            return False
        classes = ((model.get("model") or {}).get("kwargs") or {}).get("num_classes")
        if classes != DATASET_CLASSES[entry.get("dataset", "cifar10")]:
            return False
        params = model.get("recipe_params") or {}
        if any(k not in params or not _same(params[k], v) for k, v in entry.get("params", {}).items()):
            return False
    if (record.get("identity") or {}).get("purification") != entry_purification(entry):
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
        train = (f", {self.epochs} epoch{'' if self.epochs == 1 else 's'} on {self.train_images:,} training images of {self.train_data}"
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
                        f"{a['_file']} and {b['_file']} (they differ in {what}); pass {option('results')} folders "
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
                    tuple(scale.differences(paper, entry.get("dataset", "cifar10"))) if paper else (), first["_file"],
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


def fmt_number(value: float, measure: dict, stderr: bool = False) -> str:
    """`value` at the measure's precision (fixed decimals or significant digits; one significant
    digit fewer for a standard error)."""
    digits = measure["digits"] - (1 if stderr and measure["format"] == "sig" else 0)
    if not math.isfinite(value):
        return str(value)
    if measure["format"] == "sig" and value != 0:
        digits = max(0, digits - 1 - math.floor(math.log10(abs(value))))
    return f"{value:.{digits}f}"
