"""Files written atomically: a temporary file in the same folder, renamed over the target only when
complete, removed on any error, with the permissions of an ordinary file (0666 less the umask).
Every file energybench writes (checkpoints, records, figures, caches) goes through `atomic_output`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from energybench.core.errors import UserError, option

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


def check_writable_dir(folder: str | os.PathLike, argument: str = "out_dir") -> None:
    """A folder we will write into must be, or be creatable as, a writable folder: checked
    before any work starts, so a bad output folder fails at once and leaves nothing behind.
    `argument` names the option that gave the folder."""
    folder = Path(folder)
    given = option(argument)
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in str(folder)):
        raise UserError(f"{given} {str(folder)!r} holds a control character (a newline?); choose a plain path")
    probe = folder
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        raise UserError(f"{given} {folder} cannot be a folder: {probe} is a file; choose another {given}")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(f"{given} {folder} is not writable ({probe} is read-only); choose another {given}")


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


def json_safe(obj):
    """`obj` with every NaN or infinite float replaced by None: standard JSON has no NaN, and a
    file holding one is refused by strict readers (jq, JavaScript, JSON Schema validators)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def write_json_atomic(obj, path: str | os.PathLike) -> None:
    """`obj` as standard JSON (non-finite floats as null), written atomically."""
    write_text_atomic(json.dumps(json_safe(obj), indent=1, sort_keys=False, allow_nan=False) + "\n", path)


def write_npz_atomic(path: str | os.PathLike, **arrays) -> None:
    """Arrays as a compressed .npz (no pickled objects), written atomically and byte for byte the
    same for the same arrays (numpy's savez stamps each member with the current time), so a
    digest of the file identifies its content."""
    with atomic_output(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name, array in arrays.items():
                member = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                member.compress_type = zipfile.ZIP_DEFLATED
                with archive.open(member, "w", force_zip64=True) as fh:
                    np.lib.format.write_array(fh, np.asanyarray(array), allow_pickle=False)
