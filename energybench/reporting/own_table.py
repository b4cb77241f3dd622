"""A table of the user's own records (`report --table own`): one row per model the records
measure (its file, and test-time purification where it had one), one column per metric and
protocol they were measured under, with the spreads, seed means, significance marks (≈) and
attack-check marks (⚑) of the paper tables; built as a table spec and rendered by `report.build`.
"""

from __future__ import annotations

from energybench.core.hashing import json_key
from energybench.metrics import METRICS
from energybench.records.figures import model_label
from energybench.records.text import protocol_text

OWN_TABLE = "own"


def _entry(record: dict) -> dict:
    model = record["model"]
    purification = (record.get("identity") or {}).get("purification")
    label = model_label(record) + (f", purified ({purification['steps']} steps)" if purification else "")
    entry = {"key": json_key([model.get("sha256"), purification], 10), "label": label,
             "recipe": model.get("recipe"), "model_sha256": model.get("sha256")}
    if purification:
        entry["purification"] = purification
    return entry


def _measure(record: dict) -> dict | None:
    """The record's metric under its whole protocol, or None for a metric energybench no longer has."""
    if record["metric"] not in METRICS.names():
        return None
    metric = METRICS.get(record["metric"])
    fields = set(metric.Params.__dataclass_fields__)
    protocol = {k: v for k, v in (record.get("params") or {}).items() if k in fields}
    defining = metric.defining_params(protocol)
    fraction = record.get("unit") == "fraction"
    return {"key": f"{record['metric']}@{json_key(defining, 8)}",
            "label": f"{record['metric']} ({protocol_text(record)})" if defining else record["metric"],
            "metric": record["metric"], "protocol": protocol, "scale": 100 if fraction else 1,
            "format": "fixed" if fraction else "sig", "digits": 2 if fraction else 3}


def own_table(records: list[dict]) -> dict:
    """A table spec over `records` (as `reporting.cells.collect_records` gives them): every model
    x every metric-and-protocol found, without published numbers."""
    entries, measures = {}, {}
    for record in records:
        measure = _measure(record)
        if measure is None:
            continue
        entry = _entry(record)
        entries.setdefault(entry["key"], entry)
        measures.setdefault(measure["key"], measure)
    order = {name: i for i, name in enumerate(METRICS.names())}
    return {"name": OWN_TABLE, "title": f"Your records: {len(entries)} model(s), {len(measures)} measure(s)",
            "paper": None, "paper_scale": None, "rows_are": "entries",
            "entries": sorted(entries.values(), key=lambda e: e["label"]),
            "measures": sorted(measures.values(), key=lambda m: (order[m["metric"]], m["label"])),
            "published": {}, "notes": ["Accuracies in %; other quantities in their own units."]}
