"""Many records at once: every record in a folder, a pandas DataFrame of records, and a folder's
summary (summary.md)."""

from __future__ import annotations

import os
from pathlib import Path

from energybench.records.store import attack_step_key, protocol_norm, read_record, record_problem
from energybench.records.text import format_summary, protocol_text


def folder_summary(folder: str | os.PathLike, title: str) -> str:
    """summary.md: every record in the folder (not only the last command's), one table per model
    and test set, rows grouped by metric and protocol (an eps sweep shows every eps)."""
    records = folder_records(folder)
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((str((r.get("model") or {}).get("name")), str((r.get("data") or {}).get("label"))),
                          []).append(r)
    parts = [f"# {title}", "", f"All {len(records)} records in this folder, grouped by model, test set, "
             f"metric and protocol.", ""]
    for (model, data), group in groups.items():
        parts += [f"## {model} on {data}", "", format_summary(group), ""]
    return "\n".join(parts)


def load_records(paths) -> "pandas.DataFrame":  # noqa: F821  (pandas is imported lazily)
    """Records from files or folders (recursively *.json) as a DataFrame, one row per record:
    metric, value, stderr, n, eps and step_size (where the metric has them), `norm` ('Linf' or
    'L2' for every attack record, L-inf ones included, whose records leave it implicit; None for
    metrics without a threat model), `protocol` (text), one `params.<key>` column per protocol
    value, model, recipe, data, seed, device, file."""
    import pandas as pd

    rows = []
    for p in map(Path, paths):
        files = sorted(p.rglob("*.json")) if p.is_dir() else [p]
        for f in files:
            record = read_record(f)
            if record is None or "value" not in record:
                continue
            params = record.get("params") or {}
            step = attack_step_key(params)
            rows.append({
                "metric": record["metric"], "value": record["value"], "stderr": record.get("stderr"),
                "n": record["n"], "eps": params.get("eps"),
                "step_size": params.get(step) if step else None,
                "protocol": protocol_text(record),
                **{f"params.{k}": v for k, v in params.items()},
                "norm": protocol_norm(params),
                "model": record["model"].get("path"), "model_sha256": record["model"].get("sha256"),
                "recipe": record["model"].get("recipe"), "data": record["data"].get("label"),
                "seed": record.get("seed"), "device": record.get("device"),
                "wall_seconds": record.get("wall_seconds"), "file": str(f),
            })
    return pd.DataFrame(rows)


def folder_records(folder: str | os.PathLike) -> list[dict]:
    """Every valid record directly in `folder` (other JSON, e.g. AutoAttack's state, and damaged
    records are passed over), ordered by model, metric, protocol and data, with `file` set."""
    found = []
    for path in sorted(Path(folder).glob("*.json")):
        record = read_record(path)
        if record is not None and "record_version" in record and record_problem(record) is None:
            found.append({**record, "file": str(path)})
    return sorted(found, key=lambda r: (str((r.get("model") or {}).get("name")), r["metric"], protocol_text(r),
                                         str((r.get("data") or {}).get("label"))))
