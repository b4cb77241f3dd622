"""Paper table specifications: one JSON file per table in reporting/tables/ (entries, measures,
published values, notes), read and checked here.
"""

from __future__ import annotations

import json
from importlib import resources

from energybench.core.errors import UserError

DATASET_CLASSES = {"cifar10": 10, "cifar100": 100}


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
