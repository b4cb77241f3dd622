"""External models as `torch.export` programs (.pt2) that map [0, 1] NCHW images to logits,
loaded without running anything from the file but the graph's ATen operators.

torch never reads the user's file: `pt2_archive.rebuild_archive` writes a new archive in memory
from checked parts (programs rebuilt by an allow-list of fields and grammars, raw tensor payloads,
sample inputs rebuilt as plain tensors), and torch loads that one. Around the load, every pickle
entry point refuses (`safe_pickle.no_code_from_pickles`) and every string torch hands to
`sympy.sympify` is checked again; afterwards every operator in the graph and every guard is.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from unittest import mock

import sympy
import torch
import torch.nn as nn

from energybench.core.errors import UserError, option
from energybench.core.safe_pickle import no_code_from_pickles
from energybench.handles.pt2_archive import rebuild_archive
from energybench.handles.pt2_grammar import ProgramRefused, check_expression, check_guard, check_operator


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
                            f"choose another {option('batch_size')} or {option('n')}") from None

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
    `ExportedProgram.module()`) and every call in its graphs must pass `pt2_grammar` again."""
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
    rebuilt = rebuild_archive(path)
    try:
        with no_code_from_pickles(), _expressions_checked():
            program = torch.export.load(rebuilt)
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
