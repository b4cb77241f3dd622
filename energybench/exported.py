"""External models as `torch.export` programs (.pt2) that map [0, 1] NCHW images to logits,
loaded without running anything from the file but the graph's ATen operators.

`torch.export.load` can run code from an archive in two ways, and both are closed before torch
reads it:
- pickles: weights and constants marked `use_pickle` are read with
  `torch.load(weights_only=False)`, custom and opaque objects with pickle, and sample inputs are
  retried unsafely when the safe load fails. Only raw tensor payloads, a JSON program and sample
  inputs that load with `weights_only=True` are accepted, and the load itself runs with every
  pickle entry point refusing (`safe_pickle.no_code_from_pickles`).
- text: shape expressions go through `sympy.sympify` (Python `eval`), guards through `exec`, call
  targets are looked up by name. `program_check` checks every string of every program JSON against
  what torch.export writes; during the load every string torch hands to sympify is checked again,
  and afterwards every operator in the graph and every guard.

The zip itself must be what `torch.export.save` writes: uncompressed members that lie inside the
file, so no member can declare more bytes than the archive holds (a zip bomb).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import zipfile
from pathlib import Path
from unittest import mock

import sympy
import torch
import torch.nn as nn

from energybench.errors import UserError
from energybench.program_check import ProgramRefused, check_expression, check_guard, check_operator, check_program
from energybench.safe_pickle import no_code_from_pickles

# Top-level folders (below the archive's root folder) a plain exported program consists of.
_ALLOWED = ("archive_format", "archive_version", "byteorder", ".data/", "models/", "data/weights/",
            "data/constants/", "data/sample_inputs/", "extra/")
_TENSOR_CONSTANT_PREFIX = "tensor_"
MAX_PROGRAM_BYTES = 256 << 20  # one program's JSON (a WRN-28-10's is about 0.5 MB)


class ExportedClassifier(nn.Module):
    """A `torch.export` program mapping [0, 1] NCHW images to logits, as an nn.Module.

    Programs exported with a static batch size are run in chunks of that size (the last chunk
    padded). train()/eval() only flip this wrapper's flag: an exported graph has one mode.
    Images of another size or channel count than the program was exported for are refused in one
    line (torch would fail its shape guard with an assertion).
    """

    def __init__(self, program_module: nn.Module, fixed_batch: int | None,
                 input_shape: tuple[int, int, int], name: str = "the program"):
        super().__init__()
        self.program = program_module
        self.fixed_batch = fixed_batch
        self.input_shape = input_shape
        self.name = name

    def train(self, mode: bool = True):
        self.training = mode
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[1:]) != self.input_shape:
            c, h, w = self.input_shape
            raise UserError(f"{self.name} was exported for {c}x{h}x{w} images (C x H x W); these are "
                            f"{'x'.join(map(str, x.shape[1:]))}: use data of that size, or re-export it")
        try:
            return self._run(x)
        except AssertionError as exc:  # the program's own shape guards (torch.export's "Guard failed")
            if "Guard failed" not in str(exc):
                raise
            guard = str(exc).strip().splitlines()[0]
            raise UserError(f"{self.name} does not accept a batch of {len(x)} images ({guard}); "
                            f"choose another --batch-size or --n") from None

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        if self.fixed_batch is None or len(x) == self.fixed_batch:
            return self.program(x)
        outs = []
        for start in range(0, len(x), self.fixed_batch):
            chunk = x[start:start + self.fixed_batch]
            pad = self.fixed_batch - len(chunk)
            if pad:
                chunk = torch.cat([chunk, chunk[-1:].expand(pad, *chunk.shape[1:])])
            outs.append(self.program(chunk)[: self.fixed_batch - pad])
        return torch.cat(outs)


def _refuse(path: Path, why: str) -> UserError:
    return UserError(f"refusing {path}: {why}; re-export the model with torch.export.save from plain "
                     f"tensors (no tensor subclasses or custom objects)")


def _check_members(archive: zipfile.ZipFile, path: Path) -> None:
    """Stored (uncompressed) members whose bytes lie inside the file: what torch.export.save
    writes. A member that declares more than the archive holds is refused before it is read."""
    size = path.stat().st_size
    declared = 0
    for info in archive.infolist():
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


def _read_payload_config(archive: zipfile.ZipFile, name: str, path: Path) -> dict:
    """A weights or constants config: {"config": {fqn: {"path_name", "use_pickle", ...}}}."""
    try:
        entries = json.loads(archive.read(name))["config"]
    except (ValueError, KeyError, TypeError, RecursionError, zipfile.BadZipFile, OSError):
        entries = None
    if not isinstance(entries, dict) or not all(
            isinstance(fqn, str) and isinstance(meta, dict) and isinstance(meta.get("path_name"), str)
            for fqn, meta in entries.items()):
        raise UserError(f"cannot load {path} as a torch.export program ({name.split('/', 1)[-1]} is not "
                        f"a payload config: a dict of names to payload entries)")
    return entries


def inspect_archive(path: Path) -> None:
    """Raise a UserError unless the .pt2 archive holds only what torch can read without running
    code: stored members within the file, JSON programs whose every string is of a form
    torch.export writes (`program_check`), raw tensor payloads, and sample inputs readable with
    weights_only=True."""
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
        for name in names:
            inner = name[len(root):]
            if inner and not inner.startswith(_ALLOWED):
                raise _refuse(path, f"it holds {inner!r}, which is not part of a plain exported program")
            if inner.startswith(("data/weights/", "data/constants/")) and inner.endswith(".pt"):
                raise _refuse(path, f"it holds the legacy pickled payload {inner!r}")
        _check_members(archive, path)
        programs = [n for n in names if n.startswith(root + "models/") and n.endswith(".json")]
        if root + "models/model.json" not in programs:
            raise UserError(f"cannot load {path} as a torch.export program (no models/model.json)")
        for program in programs:
            if archive.getinfo(program).file_size > MAX_PROGRAM_BYTES:
                raise _refuse(path, f"its program {program[len(root):]} is larger than "
                                    f"{MAX_PROGRAM_BYTES >> 20} MB")
            try:
                check_program(archive.read(program))
            except ProgramRefused as exc:
                raise UserError(f"refusing {path}: {exc} ({program[len(root):]})") from None
        for config in (n for n in names if n.endswith(("_weights_config.json", "_constants_config.json"))):
            for fqn, meta in _read_payload_config(archive, config, path).items():
                if meta.get("use_pickle"):
                    raise _refuse(path, f"{fqn!r} is stored pickled (loading it could run code)")
                if "constants" in config and not meta["path_name"].startswith(_TENSOR_CONSTANT_PREFIX):
                    raise _refuse(path, f"constant {fqn!r} is a Python or TorchScript object")
        for sample in (n for n in names if n.startswith(root + "data/sample_inputs/")):
            try:
                torch.load(io.BytesIO(archive.read(sample)), weights_only=True)
            except Exception:  # noqa: BLE001  anything but plain tensors and containers
                raise _refuse(path, f"its sample inputs ({sample[len(root):]}) hold Python objects") from None


@contextlib.contextmanager
def _expressions_checked():
    """Every string torch hands to `sympy.sympify` while loading is checked again first."""
    sympify = sympy.sympify

    def checked_sympify(value, *args, **kwargs):
        if isinstance(value, str):
            check_expression(value)
        return sympify(value, *args, **kwargs)

    with mock.patch("sympy.sympify", checked_sympify):
        yield


def _operator_name(target) -> str:
    """The name torch.export's serializer writes for a call target."""
    module = getattr(target, "__module__", None) or ""
    name = getattr(target, "__name__", None) or type(target).__name__
    if module.startswith("torch._ops"):
        module = module.replace("torch._ops", "torch.ops")
    return f"{module}.{name}"


def check_loaded_program(program) -> None:
    """After loading, and before the program becomes a module: its guards (compiled with exec by
    `ExportedProgram.module()`) and every call in its graphs must pass `program_check` again."""
    for guard in getattr(program, "_guards_code", None) or []:
        check_guard(guard)
    for module in program.graph_module.modules():
        graph = getattr(module, "graph", None)
        if graph is None:
            continue
        for node in graph.nodes:
            if node.op == "call_function":
                name = _operator_name(node.target)
                if name != "_operator.getitem":  # how the loader unpacks an operator's outputs
                    check_operator(name)
            elif node.op not in ("placeholder", "output", "get_attr"):
                raise ProgramRefused(f"its graph has a {node.op} node")


def _example_batch(size) -> int:
    """The batch size a dynamic program was exported with (within its guards), else 1."""
    hint = getattr(getattr(size, "node", None), "hint", None)
    return int(hint) if isinstance(hint, int) and 0 < hint <= 1024 else 1


def load_exported(path: str | os.PathLike) -> ExportedClassifier:
    """Load a .pt2 program safely and check that it maps (N, 3, H, W) images to (N, K) logits."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"model file not found: {path}")
    inspect_archive(path)
    try:
        with no_code_from_pickles(), _expressions_checked():
            program = torch.export.load(str(path))
        check_loaded_program(program)
    except ProgramRefused as exc:
        raise UserError(f"refusing {path}: {exc}") from None
    except Exception as exc:  # torch raises many kinds here; all mean "not a readable program"
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(f"cannot load {path} as a torch.export program ({first[:200]})") from None
    inputs = [n for n in program.graph.nodes
              if n.op == "placeholder" and n.name in program.graph_signature.user_inputs]
    if len(inputs) != 1 or "val" not in inputs[0].meta or inputs[0].meta["val"].dim() != 4:
        raise UserError(f"{path}: the exported program must take one (N, C, H, W) image tensor")
    shape = inputs[0].meta["val"].shape
    fixed_batch = shape[0] if isinstance(shape[0], int) else None
    input_shape = tuple(int(s) for s in shape[1:])
    try:
        module = program.module()
    except Exception as exc:  # noqa: BLE001  torch cannot build a module from this program
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(f"cannot load {path} as a torch.export program ({first[:200]})") from None
    model = ExportedClassifier(module, fixed_batch, input_shape, path.name)
    probe_batch = fixed_batch if fixed_batch is not None else _example_batch(shape[0])
    probe = torch.rand(probe_batch, *input_shape)
    try:
        with torch.no_grad():
            out = model(probe)
    except Exception as exc:  # noqa: BLE001  a program that cannot run on this input
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(f"{path}: the exported program fails on a test input ({first[:200]})") from None
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        raise UserError(f"{path}: the exported program must return (N, num_classes) logits")
    if not bool(torch.isfinite(out).all()):
        raise UserError(f"{path}: the exported program returns NaN or infinite logits; check its weights")
    model.num_classes = out.shape[1]
    return model
