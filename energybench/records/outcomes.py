"""Per-image outcomes beside a record, so two records over the same images compare image by image.

A record of an accuracy metric (`clean`, the PGD metrics, `autoattack`) or a per-image score
(`jfs`, `mfs`) keeps, beside its JSON,
`<stem>.outcomes.npz` (the record's own file stem, so it is keyed exactly like the record):

    index          int64 (N,)    the image's position in the test split
    clean_correct  bool (N,)     the model is right on the clean image
    adv_correct    bool (N,)     right on the adversarial image (attacks only)
    robust         bool (N,)     what the record counts: clean_correct & adv_correct for the
                                 standard protocols (attacks only)
    loss           float32 (N,)  the attack objective at the final adversarial image (attacks only)
    margin         float32 (N,)  logit margin z_y - max_{k != y} z_k at the image the record scores
                                 (negative = misclassified)
    score          float64 (N,)  the per-image quantity a score metric averages (Fisher scores)

`paired` aligns two records' outcomes after checking that they were measured on the same images.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from energybench.core.atomic import write_npz_atomic
from energybench.core.errors import UserError
from energybench.core.hashing import file_sha256

SUFFIX = "outcomes.npz"
FIELDS = ("index", "clean_correct", "adv_correct", "robust", "loss", "margin", "score")


class OutcomeLog:
    """Collects per-image columns batch by batch (tensors on any device, or arrays): the outcome
    FIELDS, plus whatever else a metric declares in `extra` (e.g. the attack's margin paths)."""

    def __init__(self, extra: tuple[str, ...] = ()):
        self.parts: dict[str, list[np.ndarray]] = {}
        self.allowed = set(FIELDS) | set(extra)

    def add(self, **columns: torch.Tensor | np.ndarray) -> None:
        for name, column in columns.items():
            if name not in self.allowed:
                raise ValueError(f"unknown outcome field {name!r}")
            array = column.detach().cpu().numpy() if isinstance(column, torch.Tensor) else np.asarray(column)
            self.parts.setdefault(name, []).append(array)

    def columns(self) -> dict[str, np.ndarray]:
        out = {name: np.concatenate(parts) for name, parts in self.parts.items()}
        for name in ("clean_correct", "adv_correct", "robust"):
            if name in out:
                out[name] = out[name].astype(bool)
        for name in ("loss", "margin"):
            if name in out:
                out[name] = out[name].astype(np.float32)
        if "score" in out:
            out["score"] = out["score"].astype(np.float64)
        if "index" in out:
            out["index"] = out["index"].astype(np.int64)
        lengths = {len(v) for v in out.values()}
        if len(lengths) > 1:
            raise ValueError(f"outcome columns of different lengths: {lengths}")
        return out

    def write(self, path: str | Path) -> dict[str, np.ndarray]:
        columns = self.columns()
        write_npz_atomic(path, **columns)
        return columns


def write_outcomes(path: str | Path, columns: dict[str, np.ndarray]) -> None:
    """The outcome FIELDS among `columns` as <stem>.outcomes.npz (atomically)."""
    write_npz_atomic(path, **{k: v for k, v in columns.items() if k in FIELDS})


def outcomes_path(record_file: str | Path) -> Path:
    """<stem>.outcomes.npz beside the record file <stem>.json."""
    record_file = Path(record_file)
    return record_file.with_name(f"{record_file.stem}.{SUFFIX}")


# the column whose mean is the record's value, in order of preference: what an attack record
# counts, a score metric's per-image score, clean accuracy
VALUE_COLUMNS = ("robust", "score", "clean_correct")


def outcomes_sha256(record_file: str | Path) -> str | None:
    """The sha256 of the outcomes beside `record_file`, None when there are none."""
    path = outcomes_path(record_file)
    return file_sha256(path) if path.is_file() else None


def outcomes_mismatch(record: dict, record_file: str | Path) -> str | None:
    """Why the record and the per-image outcomes beside it disagree, or None (also when there are
    no outcomes): the outcomes' digest stored in the record (where it stores one), their number of
    images against `n`, and the mean of the counted column against `value`. An edit of either file
    shows, short of one that rewrites both consistently (digest included)."""
    path = outcomes_path(record_file)
    if not path.is_file():
        return None
    stored = (record.get("extra") or {}).get("outcomes_sha256")
    if stored is not None and file_sha256(path) != stored:
        return f"{path.name} is not the file the record was written with (its digest differs)"
    try:
        with np.load(path, allow_pickle=False) as npz:
            columns = {name: npz[name] for name in npz.files if name in FIELDS}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError):
        return f"{path.name} is unreadable"
    counted = next((c for c in VALUE_COLUMNS if c in columns), None)
    if counted is None or "index" not in columns:
        return f"{path.name} is not a per-image outcome file"
    n, value = len(columns["index"]), float(np.mean(columns[counted].astype(np.float64)))
    if n != record.get("n"):
        return f"{path.name} holds {n} images but the record says n = {record.get('n')}"
    if not abs(value - record.get("value", float("nan"))) <= 1e-9 * max(1.0, abs(value)):
        return f"the record's value {record.get('value')!r} is not the mean of {path.name}'s {counted} ({value:.6g})"
    return None


def read_outcomes(record: dict) -> dict[str, np.ndarray]:
    """The outcomes of a record (as returned by `evaluate`/`load` with its `file`)."""
    file = record.get("file") or record.get("_file")
    if not file:
        raise UserError(f"the {record.get('metric')} record has no file, so no outcomes beside it")
    path = outcomes_path(file)
    try:
        with np.load(path, allow_pickle=False) as npz:
            columns = {name: npz[name] for name in npz.files if name in FIELDS}
    except FileNotFoundError:
        raise UserError(f"{file} has no per-image outcomes ({path.name}); re-run its evaluation "
                        f"with this energybench (older records lack them)") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise UserError(f"{path} is corrupt ({type(exc).__name__}); delete it and re-run the evaluation") from None
    if "index" not in columns or any(len(v) != len(columns["index"]) for v in columns.values()):
        raise UserError(f"{path} is not a per-image outcome file; delete it and re-run the evaluation")
    return columns


def same_images(a: dict, b: dict) -> bool:
    """Whether two records were measured on the same test images (content digest and count)."""
    ida, idb = a.get("identity") or {}, b.get("identity") or {}
    return ida.get("data") == idb.get("data") and ida.get("n") == idb.get("n") and ida.get("data") is not None


def paired(a: dict, b: dict, field: str) -> tuple[np.ndarray, np.ndarray]:
    """The per-image `field` of records a and b, aligned by image index. Refused unless both were
    measured on the same images."""
    if not same_images(a, b):
        raise UserError(f"{a.get('metric')} and {b.get('metric')} records were measured on different "
                        f"test images (data or n differ); a paired comparison needs the same images")
    oa, ob = read_outcomes(a), read_outcomes(b)
    for name, o in (("first", oa), ("second", ob)):
        if field not in o:
            raise UserError(f"the {name} record's outcomes have no {field!r}")
    order_a, order_b = np.argsort(oa["index"]), np.argsort(ob["index"])
    if not np.array_equal(oa["index"][order_a], ob["index"][order_b]):
        raise UserError("the two records' outcomes cover different images")
    return oa[field][order_a], ob[field][order_b]
