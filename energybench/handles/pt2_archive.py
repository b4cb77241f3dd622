"""A .pt2 archive, rebuilt in memory from checked parts before torch reads it.

torch never reads the file a user gives: `rebuild_archive` reads it once with `zipfile`, and
writes a new archive holding only what an exported classifier needs, each part rebuilt from an
allow-list rather than copied:

    models/<name>.json                  rebuilt by `program_check.sanitize_program`
    data/{weights,constants}/*_config   rebuilt by `program_check.sanitize_payload_config`
    data/{weights,constants}/<name>     raw tensor bytes (read as storage, never as code)
    data/sample_inputs/<name>.pt        rebuilt as a tuple of fresh tensors and an empty dict
    archive_format, byteorder, ...      fixed forms

Anything else (extra files, a legacy pickled payload, a second copy of a member under the same
name, compressed members, members that claim more bytes than the file holds) is refused in one
line. So the strings torch turns into code (names, keyword names, pytree keys, guards, shape
expressions, call targets) can only be ones the grammars in `pt2_grammar` allow, and sample inputs
can no longer carry dictionary keys that torch pastes into generated guard code.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path

import torch

from energybench.core.errors import UserError
from energybench.core.safe_pickle import no_code_from_pickles
from energybench.handles.pt2_grammar import ProgramRefused
from energybench.handles.pt2_program import sanitize_payload_config, sanitize_program

ROOT = "archive/"
MAX_PROGRAM_BYTES = 256 << 20  # one program's JSON (a WRN-28-10's is about 0.5 MB)
_NAME = r"[A-Za-z_][A-Za-z0-9_]{0,127}"
PROGRAM = re.compile(rf"models/({_NAME})\.json\Z")
PAYLOAD_CONFIG = re.compile(rf"data/(weights|constants)/({_NAME})_(weights|constants)_config\.json\Z")
PAYLOAD = re.compile(rf"data/(weights|constants)/({_NAME})\Z")
SAMPLE_INPUTS = re.compile(rf"data/sample_inputs/({_NAME})\.pt\Z")
FIXED = {  # small text members torch writes, and the forms their content may take
    "archive_format": re.compile(rb"pt2\Z"),
    "archive_version": re.compile(rb"[0-9]{1,6}\Z"),
    "byteorder": re.compile(rb"(little|big)\Z"),
    ".data/version": re.compile(rb"[0-9]{1,6}\n?\Z"),
    ".data/serialization_id": re.compile(rb"[0-9A-Za-z]{0,128}\Z"),
}
DROPPED = ("extra/",)  # user files torch.export.save may add; torch reads them only on request


def _refuse(path: Path, why: str) -> UserError:
    return UserError(f"refusing {path}: {why}; re-export the model with torch.export.save from plain "
                     f"tensors (no tensor subclasses or custom objects)")


def _check_members(archive: zipfile.ZipFile, path: Path) -> None:
    """Stored (uncompressed) members whose bytes lie inside the file, each name once: what
    torch.export.save writes. torch's own zip reader might pick another copy of a repeated name
    than `zipfile` does, so a repeated name is refused."""
    size = path.stat().st_size
    declared = 0
    seen = set()
    for info in archive.infolist():
        if info.filename in seen:
            raise _refuse(path, f"it holds the member {info.filename!r} twice")
        seen.add(info.filename)
        if info.compress_type != zipfile.ZIP_STORED:
            raise _refuse(path, f"its member {info.filename!r} is compressed (method "
                                f"{info.compress_type}); torch.export.save stores members uncompressed")
        if info.file_size != info.compress_size or info.header_offset + info.compress_size > size:
            raise _refuse(path, f"its member {info.filename!r} declares {info.file_size:,} bytes, more "
                                f"than the {size:,}-byte archive holds (damaged, or a zip bomb)")
        declared += info.file_size
    if declared > size:
        raise _refuse(path, f"its members declare {declared:,} bytes, more than the {size:,}-byte "
                            f"archive holds (damaged, or a zip bomb)")


def _tensor_tuple(value, depth: int = 0) -> tuple:
    """A tuple of plain dense tensors (tuples may nest), copied; anything else raises ValueError."""
    if not isinstance(value, tuple) or depth > 8:
        raise ValueError("not a tuple of tensors")
    out = []
    for item in value:
        if isinstance(item, tuple):
            out.append(_tensor_tuple(item, depth + 1))
        elif type(item) is torch.Tensor and item.layout == torch.strided and not item.is_quantized:
            out.append(item.detach().clone())
        else:
            raise ValueError("not a tuple of tensors")
    return tuple(out)


def rebuild_sample_inputs(data: bytes) -> bytes:
    """Sample inputs as torch.export.save writes them for forward(x): ((tensors...), {}). Read
    with weights_only=True and written anew from the tensors alone; any other structure (keyword
    arguments, strings, lists, objects) raises ValueError."""
    with no_code_from_pickles():
        value = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    if not (isinstance(value, tuple) and len(value) == 2 and value[1] == {} and type(value[1]) is dict):
        raise ValueError("not (positional tensors, {})")
    buffer = io.BytesIO()
    torch.save((_tensor_tuple(value[0]), {}), buffer)
    return buffer.getvalue()


def _rebuilt_member(inner: str, data: bytes, path: Path) -> bytes | None:
    """The bytes torch will read for member `inner` (a path below the archive's root), or None to
    leave the member out; refuses any member that is not part of a plain exported program."""
    if inner in FIXED:
        if not FIXED[inner].match(data):
            raise _refuse(path, f"its {inner} holds {data[:40]!r}, not what torch.export.save writes")
        return data
    if PROGRAM.match(inner):
        if len(data) > MAX_PROGRAM_BYTES:
            raise _refuse(path, f"its program {inner} is larger than {MAX_PROGRAM_BYTES >> 20} MB")
        try:
            return _dumps(sanitize_program(data))
        except ProgramRefused as exc:
            raise UserError(f"refusing {path}: {exc} ({inner})") from None
    if match := PAYLOAD_CONFIG.match(inner):
        try:
            return _dumps(sanitize_payload_config(data, constants=match.group(1) == "constants"))
        except ProgramRefused as exc:
            raise _refuse(path, f"{exc} ({inner})") from None
    if PAYLOAD.match(inner):
        return data
    if SAMPLE_INPUTS.match(inner):
        try:
            return rebuild_sample_inputs(data)
        except Exception:  # noqa: BLE001  anything but a tuple of plain tensors and an empty dict
            raise _refuse(path, f"its sample inputs ({inner}) are not a tuple of tensors") from None
    if inner.startswith(DROPPED):
        return None
    if inner.startswith(("data/weights/", "data/constants/")) and inner.endswith(".pt"):
        raise _refuse(path, f"it holds the legacy pickled payload {inner!r}")
    raise _refuse(path, f"it holds {inner!r}, which is not part of a plain exported program")


def _dumps(doc: dict) -> bytes:
    return json.dumps(doc, allow_nan=False).encode()


def rebuild_archive(path: Path) -> io.BytesIO:
    """A new in-memory .pt2 made of the checked and rebuilt members of the one at `path` (see the
    module docstring); raises a one-line UserError for anything else."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise UserError(f"cannot load {path} as a torch.export program (not a zip archive: {exc})") from None
    with archive:
        names = archive.namelist()
        roots = {n.split("/", 1)[0] for n in names}
        if len(roots) != 1 or not any(n.endswith("/archive_format") for n in names):
            raise UserError(f"cannot load {path} as a torch.export program (no archive_format: not "
                            f"a .pt2 written by torch.export.save on torch >= 2.6)")
        root = roots.pop() + "/"
        _check_members(archive, path)
        if root + "models/model.json" not in names:
            raise UserError(f"cannot load {path} as a torch.export program (no models/model.json)")
        rebuilt = io.BytesIO()
        with zipfile.ZipFile(rebuilt, "w", zipfile.ZIP_STORED) as out:
            for name in names:
                inner = name[len(root):]
                if not inner or name.endswith("/"):
                    continue
                data = _rebuilt_member(inner, archive.read(name), path)
                if data is not None:
                    out.writestr(ROOT + inner, data)
    rebuilt.seek(0)
    return rebuilt
