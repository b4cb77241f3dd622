"""The record format: one JSON file per (model, metric, protocol), written and read here.

A record lives at `OUT/<metric>-<key>.json`, where `key` is a digest of the record's identity
(model sha256, data, n, every protocol value, seed, batch size, device type, metric version), so
records of an eps or probe sweep live side by side in one folder and a rerun of the same protocol
finds its record. A record holds real numbers (fractions, not percent strings): metric, value, n,
stderr, params, seed, device, dtype, the model, the data source, versions and wall time.
`RECORD_SCHEMA` names the fields every reader relies on; `record_problem` checks them.
Text rendering is in `records.text`, many records at once in `records.collection`.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from energybench.core.atomic import json_safe
from energybench.core.errors import UserError
from energybench.core.hashing import json_key
from energybench.data import data_identity
from energybench.records.outcomes import outcomes_mismatch

RECORD_VERSION = 2
def identity_key(identity: dict) -> str:
    """A 12-hex digest of a record's identity (stable: sorted keys, repr of floats)."""
    return json_key(identity)


def record_path(out_dir: str | os.PathLike, metric: str, identity: dict) -> Path:
    """OUT/<metric>-<key>.json: one file per metric and identity."""
    return Path(out_dir) / f"{metric}-{identity_key(identity)}.json"


def read_record(path: str | os.PathLike) -> dict | None:
    """A record, or None when absent or unreadable (it will be recomputed)."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None
    return record if isinstance(record, dict) and "metric" in record else None


def load_record(path: str | os.PathLike, required: bool = True) -> dict | None:
    """A record file for a reader that shows it (report, plot, figures), strictly: a file that is
    not readable JSON is a one-line UserError; JSON that is no energybench record is one too when
    `required`, else None (other JSON in a folder of records: AutoAttack's state, a plan); a
    record without the fields readers rely on (`RECORD_SCHEMA`) is one."""
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        raise UserError(f"{path} is not readable JSON; remove it or run its evaluation again") from None
    if not isinstance(record, dict) or "record_version" not in record or not isinstance(record.get("metric"), str):
        if required:
            raise UserError(f"{path} is not an energybench record")
        return None
    problem = record_problem(record) or record_inconsistency(record, path)
    if problem is not None:
        raise UserError(f"{path} is not a valid record: {problem}; remove it or run its evaluation again")
    return record


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# What a reader may assume of a record: field -> (check, what it must be).
RECORD_SCHEMA = {
    "metric": (lambda v: isinstance(v, str), "a metric name"),
    "value": (lambda v: _is_number(v), "a number"),
    "n": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1, "a positive integer"),
    "stderr": (lambda v: v is None or _is_number(v), "a number or null"),
    "params": (lambda v: isinstance(v, dict), "an object of protocol values"),
    "model": (lambda v: isinstance(v, dict) and isinstance(v.get("sha256"), str), "an object with a sha256"),
    "data": (lambda v: isinstance(v, dict), "an object describing the test data"),
    "identity": (lambda v: isinstance(v, dict), "an object (the record's identity)"),
}


def record_problem(record: dict) -> str | None:
    """Why a record does not fit RECORD_SCHEMA (the first field that does not), or None."""
    for name, (ok, what) in RECORD_SCHEMA.items():
        if name not in record:
            return f"it has no {name}"
        if not ok(record[name]):
            return f"its {name} is not {what}"
    for name in ("training", "checkpoint", "recipe_params"):
        value = record["model"].get(name)
        if value is not None and not isinstance(value, dict):
            return f"its model.{name} is not an object"
    return None


def _seal_digest(record: dict) -> str:
    body = {k: v for k, v in record.items() if k not in ("sha256", "file")}
    return hashlib.sha256(json.dumps(json_safe(body), sort_keys=True, allow_nan=False).encode()).hexdigest()


def sealed(record: dict) -> dict:
    """The record with `sha256`, a digest of everything else in it as written, so an edit of any
    field (a value, `model.recipe`, `data.label`) shows: `record_inconsistency`."""
    return {**record, "sha256": _seal_digest(record)}


def record_inconsistency(record: dict, path: str | os.PathLike) -> str | None:
    """Why a stored record cannot be what energybench wrote at `path`, or None: its seal (where it
    has one), the identity fields re-derived from the model and data descriptions (model sha256,
    data content, metric), the key in its file name, and the per-image outcomes beside it. A
    forger who rewrites all of them consistently is out of scope (the files are not signed)."""
    if "sha256" in record and record["sha256"] != _seal_digest(record):
        return "it was changed after it was written (its sha256 does not match its content)"
    identity = record.get("identity") or {}
    if identity.get("metric") != record.get("metric"):
        return f"its metric {record.get('metric')!r} is not the one its identity names"
    if identity.get("model_sha256") != (record.get("model") or {}).get("sha256"):
        return "its model's sha256 is not the one its identity names"
    if identity.get("purification") != (record.get("model") or {}).get("purification"):
        return "its model's purification is not the one its identity names"
    source = (record.get("data") or {}).get("source")
    if isinstance(source, dict) and data_identity(source) != identity.get("data"):
        return "its test data description is not the data its identity names"
    if not Path(path).stem.endswith("-" + identity_key(identity)):
        return "its identity is not the one its file name is keyed by"
    return outcomes_mismatch(record, path)


def same_inputs(record: dict, identity: dict) -> bool:
    """Whether a stored record was computed from the same model, data, protocol and settings."""
    return record.get("identity") == json.loads(json.dumps(identity))


def attack_step_key(params: dict) -> str | None:
    """Which parameter is the attack's step: `pgd_step_size` where a metric also has an SGLD
    `step_size` (energy-hist), else `step_size` beside an `eps`, else none."""
    if "pgd_step_size" in params:
        return "pgd_step_size"
    return "step_size" if "eps" in params and "step_size" in params else None


def protocol_norm(params: dict) -> str | None:
    """The threat model of an attack protocol: its `norm`, 'Linf' where an attack protocol has
    none (attacks.PGDConfig.IMPLICIT), None for a protocol without an attack budget."""
    if "norm" in params:
        return params["norm"]
    return "Linf" if "eps" in params or "eps_grid" in params else None
