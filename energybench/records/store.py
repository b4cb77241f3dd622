"""Result records and atomic file output.

A record is one JSON file per (model, metric, protocol): `OUT/<metric>-<key>.json`, where `key`
is a digest of the record's identity (model sha256, data, n, every protocol value, seed, batch
size, device type, metric version), so records of an eps or probe sweep live side by side in one
folder and a rerun of the same protocol finds its record. A record holds real numbers (fractions,
not percent strings): metric, value, n, stderr, params, seed, device, dtype, the model, the data
source, versions and wall time. `load_records` reads many into a pandas DataFrame.

Every file energybench writes goes through `atomic_output`: a temporary file in the same folder,
renamed over the target only when complete, removed on any error, with the permissions of an
ordinary file (0666 less the umask).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from pathlib import Path

from energybench.errors import UserError
from energybench.hashing import json_key
from energybench.stats import wilson_interval

RECORD_VERSION = 2
NORM_TEXT = {"Linf": "L-inf", "L2": "L2"}  # how a threat model reads in summaries
TEMP_SUFFIX = ".tmp"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike):
    """Yield a temporary path beside `path`; on success it replaces `path`, on any error
    (including KeyboardInterrupt) it is removed. Readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; results are for sharing
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_writable_dir(folder: str | os.PathLike, option: str = "--out") -> None:
    """A folder we will write into must be, or be creatable as, a writable folder: checked
    before any work starts, so a bad --out fails at once and leaves nothing behind."""
    folder = Path(folder)
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in str(folder)):
        raise UserError(f"{option} {str(folder)!r} holds a control character (a newline?); choose a plain path")
    probe = folder
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        raise UserError(f"{option} {folder} cannot be a folder: {probe} is a file; choose another {option}")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(f"{option} {folder} is not writable ({probe} is read-only); choose another {option}")


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete temporary files a killed writer left in `folder` (`.<name>.<random>.tmp`); call it
    only while holding the folder's lock. Returns what was removed."""
    removed = []
    for tmp in Path(folder).glob(f".*{TEMP_SUFFIX}"):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def write_text_atomic(text: str, path: str | os.PathLike) -> None:
    """Write `text` (UTF-8) to `path` atomically."""
    with atomic_output(path) as tmp:
        with open(tmp, "w", encoding="utf-8", errors="surrogateescape") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())


def write_json_atomic(obj, path: str | os.PathLike) -> None:
    write_text_atomic(json.dumps(obj, indent=1, sort_keys=False, allow_nan=True) + "\n", path)


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


def same_inputs(record: dict, identity: dict) -> bool:
    """Whether a stored record was computed from the same model, data, protocol and settings."""
    return record.get("identity") == json.loads(json.dumps(identity))


def _per_255(value) -> str:
    return f"{value * 255:g}/255" if isinstance(value, (int, float)) else str(value)


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


def budget_text(value, norm: str | None) -> str:
    """A budget as it is written for its norm: x/255 for L-inf, a plain length for L2."""
    return f"{value:g}" if norm == "L2" and isinstance(value, (int, float)) else _per_255(value)


def protocol_text(record: dict) -> str:
    """The protocol of a record in a few words: the threat model and the attack's eps and step
    (x/255 for L-inf, lengths for L2) where the metric has them, then every other value that
    differs from the metric's defaults (`changed_params`)."""
    params, changed = record.get("params") or {}, record.get("changed_params") or {}
    step = attack_step_key(params)
    norm = protocol_norm(params)
    pixel = {"eps", "radius", "flat_radius", step}
    parts = [f"{label} {budget_text(params[key], norm)}" for key, label in (("eps", "eps"), (step, "step"))
             if key in params and params[key] is not None]
    if parts and norm is not None:
        parts[0] = f"{NORM_TEXT.get(norm, norm)} {parts[0]}"
    parts += [f"{key} {budget_text(value, norm) if key in pixel else value}"
              for key, value in changed.items() if key not in ("eps", step, "norm")]
    return ", ".join(parts) or "default"


def load_records(paths) -> "pandas.DataFrame":  # noqa: F821
    """Records from files or folders (recursively *.json) as a DataFrame, one row per record:
    metric, value, stderr, n, eps and step_size (where the metric has them), `protocol` (text),
    one `params.<key>` column per protocol value, model, recipe, data, seed, device, file."""
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
                "model": record["model"].get("path"), "model_sha256": record["model"].get("sha256"),
                "recipe": record["model"].get("recipe"), "data": record["data"].get("label"),
                "seed": record.get("seed"), "device": record.get("device"),
                "wall_seconds": record.get("wall_seconds"), "file": str(f),
            })
    return pd.DataFrame(rows)


def raised_checks(record: dict) -> dict[str, dict]:
    """The attack-failure checks a record raised (its `diagnostics` block: energybench.diagnostics)."""
    checks = record.get("diagnostics")
    if not isinstance(checks, dict):
        return {}
    return {name: c for name, c in checks.items() if isinstance(c, dict) and c.get("flag")}


def _evidence_text(evidence: dict) -> str:
    return ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in evidence.items())


def check_lines(record: dict) -> list[str]:
    """One line per raised check: what was found, the evidence, and what to do."""
    return [f"{record['metric']}: {c.get('title', name)} ({_evidence_text(c.get('evidence') or {})}): "
            f"{c.get('advice', '')}" for name, c in raised_checks(record).items()]


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


SMALL_N = 100  # below this many images an accuracy's spread is shown as its Wilson interval


def spread_text(record: dict) -> str:
    """How precise a record's value is, for the summary: ± its standard error to two significant
    digits (in % for accuracies); for an accuracy on fewer than SMALL_N images, or at 0% or 100%
    where the binomial standard error is 0, the 95% Wilson interval instead."""
    stderr, n = record.get("stderr"), record.get("n")
    if record.get("unit") == "fraction" and isinstance(n, int) and n > 0:
        p = record["value"]
        if n < SMALL_N or p in (0.0, 1.0):
            low, high = wilson_interval(p, n)
            return f"95% CI {100 * float(low):.1f}–{100 * float(high):.1f}"
        return "" if stderr is None else f"{100 * stderr:.2f}" if 100 * stderr >= 0.1 else f"{100 * stderr:.2g}"
    if stderr is None or not math.isfinite(stderr):
        return ""
    return f"{stderr:.2g}"


def threat_model_mismatch(record: dict) -> str | None:
    """A sentence when a RobustBench model of one threat model (Linf or L2) was attacked in the
    other norm (a number its leaderboard does not rank), else None."""
    info = record.get("model") or {}  # a zoo model's record carries robustbench_name and threat_model
    model_norm, attack_norm = info.get("threat_model"), protocol_norm(record.get("params") or {})
    if model_norm not in NORM_TEXT or attack_norm is None or attack_norm == model_norm:
        return None
    return (f"attacked in {NORM_TEXT.get(attack_norm, attack_norm)}, but {info.get('robustbench_name', 'the model')} "
            f"is a RobustBench {NORM_TEXT[model_norm]} model (its leaderboard number is {NORM_TEXT[model_norm]})")


def format_summary(records: list[dict]) -> str:
    """A Markdown table of records (metric, protocol, value in % for accuracies, ± stderr, n,
    attack checks, seconds), then the attack-failure checks they raised and any reliability
    warnings the metrics recorded."""
    lines = ["| metric | protocol | value | ± stderr or 95% CI | n | attack checks | seconds |",
             "|---|---|---:|---:|---:|---|---:|"]
    warnings, raised = [], []
    for r in records:
        pct = r.get("unit") == "fraction"
        scale = 100.0 if pct else 1.0
        value = f"{r['value'] * scale:.2f} %" if pct else f"{r['value']:.4g}"
        err = spread_text(r)
        checks = r.get("diagnostics")
        flags = raised_checks(r)
        status = "" if not isinstance(checks, dict) else (f"⚑ {len(flags)} raised" if flags else "passed")
        lines.append(f"| {r['metric']} | {protocol_text(r)} | {value} | {err} | {r['n']} | {status} | "
                     f"{r['wall_seconds']:.1f} |")
        raised += [f"- ⚑ {line}" for line in check_lines(r)]
        warnings += [f"- {r['metric']}: {w}" for w in (r.get("extra") or {}).get("warnings", [])]
        mismatch = threat_model_mismatch(r)
        if mismatch:
            warnings.append(f"- {r['metric']}: {mismatch}")
        counted_wrong = (r.get("extra") or {}).get("nonfinite_counted_wrong")
        if counted_wrong:
            warnings.append(f"- {r['metric']}: {counted_wrong} of {r['n']} images had NaN or infinite logits "
                            f"and were counted as wrong (--nonfinite wrong)")
    if raised:
        lines += ["", "Attack-failure checks raised (the robust accuracy may be overstated):", *raised]
    if warnings:
        lines += ["", "Warnings raised by the metrics:", *warnings]
    return "\n".join(lines)


def write_npz_atomic(path: str | os.PathLike, **arrays) -> None:
    """Arrays as a compressed .npz (no pickled objects), written atomically."""
    import numpy as np

    with atomic_output(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
