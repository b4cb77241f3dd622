"""Result records: one JSON file per (evaluated model, metric), written atomically.

A record holds real numbers (fractions, not percent strings): metric, value, n, stderr, params,
seed, device, dtype, the model (path, sha256, kind, recipe), the data source, versions and wall
time. `load_records` reads many into a pandas DataFrame.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

RECORD_VERSION = 1


def write_text_atomic(text: str, path: str | os.PathLike) -> None:
    """Write `text` to `path` via a temporary file and a rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, 0o644)  # mkstemp makes it private; results are for sharing
    os.replace(tmp, path)


def write_json_atomic(obj, path: str | os.PathLike) -> None:
    write_text_atomic(json.dumps(obj, indent=1, sort_keys=False, allow_nan=True) + "\n", path)


def record_path(out_dir: str | os.PathLike, metric: str) -> Path:
    return Path(out_dir) / f"{metric}.json"


def read_record(path: str | os.PathLike) -> dict | None:
    """A record, or None when absent or unreadable (it will be recomputed)."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) and "metric" in record else None


def same_inputs(record: dict, identity: dict) -> bool:
    """Whether a stored record was computed from the same model, data, params and seed."""
    return record.get("identity") == identity


def load_records(paths) -> "pandas.DataFrame":  # noqa: F821
    """Records from files or folders (recursively *.json) as a DataFrame, one row per record."""
    import pandas as pd

    rows = []
    for p in map(Path, paths):
        files = sorted(p.rglob("*.json")) if p.is_dir() else [p]
        for f in files:
            record = read_record(f)
            if record is None or "value" not in record:
                continue
            rows.append({
                "metric": record["metric"], "value": record["value"], "n": record["n"],
                "stderr": record.get("stderr"), "model": record["model"].get("path"),
                "recipe": record["model"].get("recipe"), "data": record["data"].get("label"),
                "wall_seconds": record.get("wall_seconds"), "file": str(f),
            })
    return pd.DataFrame(rows)


def format_summary(records: list[dict]) -> str:
    """A Markdown table of records: metric, value (percent for accuracies), +-stderr, n, time."""
    lines = ["| metric | value | ± stderr | n | seconds |", "|---|---:|---:|---:|---:|"]
    for r in records:
        pct = r.get("unit") == "fraction"
        scale = 100.0 if pct else 1.0
        value = f"{r['value'] * scale:.2f}{' %' if pct else ''}" if pct else f"{r['value']:.4g}"
        err = "" if r.get("stderr") is None else f"{r['stderr'] * scale:.2f}"
        lines.append(f"| {r['metric']} | {value} | {err} | {r['n']} | {r['wall_seconds']:.1f} |")
    return "\n".join(lines)
