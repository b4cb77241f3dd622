"""Crafted torch.export archives (.pt2) whose text torch would run as code, and real exports that
must still load.

torch.export's loader evaluates text from the program JSON: shape expressions through
`sympy.sympify`, `guards_code` through `exec`, call targets by name lookup. Each crafted archive
below carries code that creates a marker file; energybench must refuse it (exit 2, one line) before
torch reads it, with no marker and nothing written. The reference tests show torch's own loader
running the first ones, which is why the check exists.
"""

from __future__ import annotations

import json
import re
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from testkit import TinyClassifier

from energybench.core.errors import UserError
from energybench.handles.exported import load_exported
from energybench.handles.pt2_program import check_expression, check_guard, check_operator

MARKER = "PWNED"


def _export(model: torch.nn.Module, path: Path, dynamic: bool, batch: int = 4) -> Path:
    kwargs = {"dynamic_shapes": {"x": {0: torch.export.Dim("batch", min=1, max=4096)}}} if dynamic else {}
    torch.export.save(torch.export.export(model.eval(), (torch.rand(batch, 3, 32, 32),), **kwargs), str(path))
    return path


@pytest.fixture(scope="module")
def programs(tmp_path_factory):
    root = tmp_path_factory.mktemp("programs")
    torch.manual_seed(0)
    model = TinyClassifier().eval()
    return {"model": model, "root": root,
            "static": _export(model, root / "static.pt2", dynamic=False, batch=2),
            "dynamic": _export(model, root / "dynamic.pt2", dynamic=True)}


@pytest.fixture(scope="module")
def synthetic_npz(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "synthetic.npz"
    rng = np.random.default_rng(0)
    np.savez(path, images=rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8),
             labels=rng.integers(0, 10, 16))
    return path


def _rewrite(source: Path, target: Path, edit, member: str = "models/model.json") -> Path:
    """A copy of `source` whose program JSON (or another member) went through `edit`."""
    with zipfile.ZipFile(source) as zin:
        items = [(info, zin.read(info.filename)) for info in zin.infolist()]
    with zipfile.ZipFile(target, "w") as zout:
        for info, data in items:
            if info.filename.endswith(member):
                doc = json.loads(data)
                doc = edit(doc) or doc
                data = json.dumps(doc).encode()
            zout.writestr(info, data)
    return target


def _graph(doc):
    return doc["graph_module"]["graph"]


def _touch(marker: Path) -> str:
    return f"__import__('pathlib').Path({str(marker)!r}).touch()"


# Each crafted archive: (base program, what it does to the program JSON given the marker path).
def _expr_in_input_size(doc, m):  # the first archive: a dynamic batch size
    _graph(doc)["tensor_values"]["x"]["sizes"][0]["as_expr"]["expr_str"] = (
        f"({_touch(m)}, Symbol('s77', positive=True, integer=True))[1]")


def _guard(doc, m):  # the second archive: a static program's guard
    doc["guards_code"] = [f"{_touch(m)} or True"]


def _guard_in_size_check(doc, m):  # a guard that looks like one torch writes
    doc["guards_code"] = [f"L['x'].size()[0] == 2 and {_touch(m)}"]


def _expr_in_shape_env(doc, m):  # a symbolic size the graph computes (ShapeEnv: sym_int_values)
    values = _graph(doc)["sym_int_values"]
    name = next(iter(values))
    values[name]["as_expr"]["expr_str"] = f"Add({_touch(m)}, Symbol('s77', positive=True, integer=True))"


def _expr_sympy_builtin(doc, m):  # a sympy function that evaluates code (lambdify runs exec)
    _graph(doc)["tensor_values"]["x"]["sizes"][0]["as_expr"]["expr_str"] = (
        f"Symbol('s77', positive=True, integer=True) + 0 * lambdify([], {_touch(m)!r})")


def _expr_in_sym_bool(doc, m):
    _graph(doc)["sym_bool_values"]["evil"] = {"as_expr": {"expr_str": f"Eq({_touch(m)}, 0)"}}


def _range_constraint_key(doc, m):
    doc["range_constraints"][_touch(m)] = {"min_val": 0, "max_val": None}


def _range_constraint_value(doc, m):
    key = next(iter(doc["range_constraints"]))
    doc["range_constraints"][key]["max_val"] = _touch(m)


def _input_spec_string(doc, m):  # a constant string input: torch writes it into a guard as '{value}'
    spec = doc["graph_module"]["signature"]["input_specs"]
    user = next(s for s in spec if "user_input" in s)
    user["user_input"]["arg"] = {"as_string": f"'; {_touch(m)}; '"}


def _parameter_name(doc, m):
    spec = doc["graph_module"]["signature"]["input_specs"]
    param = next(s for s in spec if "parameter" in s)
    param["parameter"]["parameter_name"] = f"conv.weight\nimport os; {_touch(m)}"


def _node_target_python(doc, m):  # a call target that resolves to os.system
    node = _graph(doc)["nodes"][0]
    node["target"] = "torch.os.system"
    node["inputs"] = [{"name": "command", "arg": {"as_string": f"touch {m}"}, "kind": 1}]


def _node_target_save(doc, m):  # an ATen operator that writes a file
    _graph(doc)["nodes"].insert(0, {
        "target": "torch.ops.aten.save.default", "name": "evil", "metadata": {}, "outputs": [],
        "inputs": [{"name": "item", "arg": {"as_tensor": {"name": "x"}}, "kind": 1},
                   {"name": "filename", "arg": {"as_string": str(m)}, "kind": 1}],
        "is_hop_single_tensor_return": None})


def _node_target_custom_op(doc, m):
    _graph(doc)["nodes"][0]["target"] = "#evil:run_anything"


def _operator_argument(doc, m):  # an argument that names a function
    _graph(doc)["nodes"][0]["inputs"].append({"name": "fn", "arg": {"as_operator": "builtins.exec"}, "kind": 1})


def _keyword_name(doc, m):  # keyword names go into the source FX generates
    _graph(doc)["nodes"][0]["inputs"][0]["name"] = f"input=x, _={_touch(m)}, y"


def _node_name(doc, m):
    _graph(doc)["nodes"][0]["name"] = f"conv2d = {_touch(m)}"


def _tensor_value_key(doc, m):
    _graph(doc)["tensor_values"][f"x; {_touch(m)}"] = _graph(doc)["tensor_values"]["x"]


def _custom_object(doc, m):
    _graph(doc)["custom_obj_values"]["obj"] = {"name": "obj", "class_fqn": "__torch__.Evil"}


def _unknown_field(doc, m):
    doc["graph_module"]["post_load_hook"] = _touch(m)


def _buffer_mutation(doc, m):
    outputs = doc["graph_module"]["signature"]["output_specs"]
    outputs.append({"buffer_mutation": {"arg": {"name": "x"}, "buffer_name": "bn.running_mean"}})


def _in_spec_keyword(doc, m):  # a keyword-argument name: torch pastes it into the generated forward
    signature = doc["graph_module"]["module_call_graph"][0]["signature"]
    spec = json.loads(signature["in_spec"])
    kwargs = spec[1]["children_spec"][1]
    kwargs["context"] = json.dumps([f"y=__import__('pathlib').Path({str(m)!r}).touch()"])
    kwargs["children_spec"] = [{"type": None, "context": None, "children_spec": []}]
    signature["in_spec"] = json.dumps(spec)


def _in_spec_type(doc, m):  # a pytree type name torch looks up
    signature = doc["graph_module"]["module_call_graph"][0]["signature"]
    spec = json.loads(signature["in_spec"])
    spec[1]["type"] = "os.system"
    signature["in_spec"] = json.dumps(spec)


CRAFTED = {
    "in-spec-keyword": ("static", _in_spec_keyword, r"the keyword argument .* is not a Python name"),
    "in-spec-type": ("static", _in_spec_type, r"call signature names the type 'os.system'"),
    "expr-input-size": ("dynamic", _expr_in_input_size, r"shape expression .* is not one torch.export writes"),
    "guard": ("static", _guard, r"the guard .* is not one torch.export writes"),
    "guard-after-size-check": ("static", _guard_in_size_check, r"the guard .* is not one torch.export writes"),
    "expr-shape-env": ("dynamic", _expr_in_shape_env, r"shape expression .* is not one torch.export writes"),
    "expr-sympy-lambdify": ("dynamic", _expr_sympy_builtin, r"shape expression .*\(calls 'lambdify'\)"),
    "expr-sym-bool": ("dynamic", _expr_in_sym_bool, r"shape expression .* is not one torch.export writes"),
    "range-constraint-key": ("dynamic", _range_constraint_key, r"has the key .* which is not a name"),
    "range-constraint-value": ("dynamic", _range_constraint_value, r"field 'max_val' holds text"),
    "input-spec-string": ("static", _input_spec_string, r"must take exactly one input, an image tensor"),
    "parameter-name": ("static", _parameter_name, r"parameter_name .* is not a Python name"),
    "target-python-function": ("static", _node_target_python, r"calls 'torch.os.system', which is not an ATen"),
    "target-aten-save": ("static", _node_target_save, r"calls torch.ops.aten.save.default, which reads or writes a file"),
    "target-custom-op": ("static", _node_target_custom_op, r"calls '#evil:run_anything'"),
    "operator-argument": ("static", _operator_argument, r"calls 'builtins.exec'"),
    "keyword-name": ("static", _keyword_name, r"the name .* is not a Python name"),
    "node-name": ("static", _node_name, r"the name .* is not a Python name"),
    "tensor-value-key": ("static", _tensor_value_key, r"has the key .* which is not a name"),
    "custom-object": ("static", _custom_object, r"custom \(TorchScript or Python\) object"),
    "unknown-field": ("static", _unknown_field, r"field 'post_load_hook' holds text energybench does not check"),
    "buffer-mutation": ("static", _buffer_mutation, r"buffer_mutation output \(was it exported in training mode"),
}


def _crafted(programs, case: str, marker: Path) -> Path:
    base, edit, _ = CRAFTED[case]
    return _rewrite(programs[base], programs["root"] / f"{case}.pt2", lambda doc: edit(doc, marker))


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_crafted_program_is_refused_before_torch_reads_it(case, programs, synthetic_npz, run_cli, tmp_path):
    marker = tmp_path / MARKER
    evil = _crafted(programs, case, marker)
    out = tmp_path / "out"
    code, stdout, err = run_cli("eval", "--model", evil, "--data", synthetic_npz, "--n", 8,
                                "--metric", "clean", "--device", "cpu", "--out", out)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("energybench: error: refusing"), lines[0]
    assert re.search(CRAFTED[case][2], lines[0]), lines[0]
    assert not marker.exists(), "the crafted program ran code"
    assert not out.exists()


@pytest.mark.parametrize("case", ["expr-input-size", "guard", "target-python-function"])
def test_crafted_program_is_refused_by_sample_too(case, programs, run_cli, tmp_path):
    marker = tmp_path / MARKER
    evil = _crafted(programs, case, marker)
    code, stdout, err = run_cli("sample", "--model", evil, "--out", tmp_path / "out", "--device", "cpu",
                                "--steps", "1", "--n-per-class", "1", "--init", "uniform")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "refusing" in err, err
    assert not marker.exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("case", ["expr-input-size", "guard", "expr-shape-env", "guard-after-size-check"])
def test_torch_itself_runs_the_code_in_these_programs(case, programs, tmp_path):
    """The reference: torch.export.load and .module() execute the crafted text (why we check)."""
    marker = tmp_path / MARKER
    evil = _crafted(programs, case, marker)
    try:
        program = torch.export.load(str(evil))
        program.module()(torch.rand(4 if CRAFTED[case][0] == "dynamic" else 2, 3, 32, 32))
    except Exception:  # noqa: BLE001  torch may fail afterwards; the code has run by then
        pass
    assert marker.exists()


def test_every_program_in_the_archive_is_checked(programs, tmp_path):
    """torch.export.load reads every models/*.json, not only model.json."""
    marker = tmp_path / MARKER
    with zipfile.ZipFile(programs["dynamic"]) as zin:
        items = [(info, zin.read(info.filename)) for info in zin.infolist()]
    evil = tmp_path / "two-programs.pt2"
    with zipfile.ZipFile(evil, "w") as zout:
        for info, data in items:
            zout.writestr(info, data)
            if info.filename.endswith("models/model.json"):  # a second program, as torch would load it
                doc = json.loads(data)
                _expr_in_input_size(doc, marker)
                zout.writestr(info.filename.replace("model.json", "second.json"), json.dumps(doc))
            elif info.filename.endswith(("model.pt", "model_weights_config.json", "model_constants_config.json")):
                zout.writestr(info.filename.replace("model", "second"), data)
    with pytest.raises(UserError, match=r"refusing .* \(models/second.json\)"):
        load_exported(evil)
    assert not marker.exists()


# --------------------------------------------------------------------------- archive limits


def _patch_central_size(path: Path, member: str, size: int) -> None:
    """Declare `size` bytes for a stored member in the central directory (a lying zip header)."""
    blob = bytearray(path.read_bytes())
    name = member.encode()
    start = 0
    while True:
        at = blob.find(b"PK\x01\x02", start)
        assert at >= 0, "member not found"
        name_len = struct.unpack_from("<H", blob, at + 28)[0]
        if blob[at + 46: at + 46 + name_len].endswith(name):
            struct.pack_into("<II", blob, at + 20, size, size)  # compressed, uncompressed size
            break
        start = at + 4
    path.write_bytes(bytes(blob))


def test_a_member_declaring_more_bytes_than_the_file_is_refused(programs, tmp_path):
    bomb = tmp_path / "lying-size.pt2"
    bomb.write_bytes(programs["static"].read_bytes())
    _patch_central_size(bomb, "data/weights/weight_0", 3_700_000_000)
    with pytest.raises(UserError, match=r"declares 3,700,000,000 bytes, more than the .* archive holds"):
        load_exported(bomb)


def test_a_program_nested_too_deeply_gets_one_line(programs, synthetic_npz, run_cli, tmp_path):
    """JSON nested 100,000 deep (Python's parser recurses): one line, none of torch's logging."""
    deep = tmp_path / "deep.pt2"
    with zipfile.ZipFile(programs["static"]) as zin:
        items = [(info, zin.read(info.filename)) for info in zin.infolist()]
    with zipfile.ZipFile(deep, "w") as zout:
        for info, data in items:
            zout.writestr(info, b"[" * 100_000 + b"]" * 100_000 if info.filename.endswith("models/model.json") else data)
    code, _, err = run_cli("eval", "--model", deep, "--data", synthetic_npz, "--n", 8, "--metric", "clean",
                           "--device", "cpu", "--out", tmp_path / "out")
    assert code == 2 and err.strip().splitlines() == [
        f"energybench: error: refusing {deep}: its program is nested too deeply to read (models/model.json)"], err


def test_a_compressed_member_is_refused(programs, tmp_path):
    """A deflated member can expand a few MB into gigabytes (a zip bomb): torch.export.save stores
    members uncompressed, so a compressed one is refused from the zip's headers alone."""
    bomb = tmp_path / "deflated.pt2"
    with zipfile.ZipFile(programs["static"]) as zin:
        items = [(info, zin.read(info.filename)) for info in zin.infolist()]
    with zipfile.ZipFile(bomb, "w") as zout:
        for info, data in items:
            if info.filename.endswith("weight_0"):
                data = bytes(64 << 20)  # 64 MB of zeros, about 64 kB deflated
                info.compress_type = zipfile.ZIP_DEFLATED
            zout.writestr(info, data)
    assert bomb.stat().st_size < 1 << 20
    with pytest.raises(UserError, match=r"weight_0' is compressed"):
        load_exported(bomb)


# --------------------------------------------------------------------------- real exports load


class _Regions(torch.nn.Module):
    """A forward with no_grad and autocast regions (export writes higher-order operators)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.fc = torch.nn.Linear(4, 10)

    def forward(self, x):
        with torch.no_grad():
            h = self.conv(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            h = h * 1.0
        return self.fc(h.float().mean((2, 3)))


class _Guarded(torch.nn.Module):
    """A forward that branches on the batch size: export writes guards_code for it."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(3 * 32 * 32, 10)

    def forward(self, x):
        if x.shape[0] > 3:
            return self.fc(x.flatten(1))
        return 2 * self.fc(x.flatten(1))


def _real_models():
    import torchvision

    from energybench.handles.checkpoint import load_model
    from energybench.models import create_model

    repo = Path(__file__).resolve().parents[2]
    yield "tiny-static", TinyClassifier(), {}
    yield "regions", _Regions(), {}
    yield "resnet18-torchvision", torchvision.models.resnet18(num_classes=10), {}
    yield "preact-resnet18", create_model("preact-resnet18"), {}
    for ckpt in sorted((repo / "checkpoints").glob("*-smoke.pt")):
        yield ckpt.stem, load_model(ckpt).model, {}


@pytest.mark.parametrize("dynamic", [False, True], ids=["static-batch", "dynamic-batch"])
def test_real_exports_load_and_give_the_models_logits(dynamic, tmp_path):
    torch.manual_seed(0)
    x = torch.rand(5, 3, 32, 32)
    for name, model, _ in _real_models():
        model.eval()
        path = _export(model, tmp_path / f"{name}.pt2", dynamic=dynamic)
        loaded = load_exported(path)
        with torch.no_grad():
            assert torch.allclose(loaded(x), model(x), atol=1e-5), name


def test_exports_with_guards_load_and_keep_their_guards(tmp_path):
    model = _Guarded().eval()
    program = torch.export.export(model, (torch.rand(4, 3, 32, 32),),
                                  dynamic_shapes={"x": {0: torch.export.Dim.AUTO}})
    assert program._guards_code == ["L['x'].size()[0] > 3"]  # torch wrote a guard
    torch.export.save(program, str(tmp_path / "guarded.pt2"))
    loaded = load_exported(tmp_path / "guarded.pt2")
    x = torch.rand(6, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x))
    with pytest.raises(UserError, match=r"does not accept a batch of 2 images \(Guard failed: x.size\(\)\[0\] >= 4\)"):
        loaded(torch.rand(2, 3, 32, 32))


def test_robustbench_wide_resnet_exports_load(tmp_path):
    """RobustBench's own WRN-28-10 class (the public CIFAR-10 architecture), exported as a user
    would, loads and gives its logits."""
    from energybench.handles.zoo import robustbench

    wide_resnet = robustbench().model_zoo.architectures.wide_resnet
    torch.manual_seed(0)
    model = wide_resnet.WideResNet(depth=28, widen_factor=10).eval()
    path = _export(model, tmp_path / "wrn-28-10.pt2", dynamic=True, batch=2)
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(load_exported(path)(x), model(x), atol=1e-5)


def test_images_of_another_size_get_one_line(programs, run_cli, tmp_path):
    data = tmp_path / "size64.npz"
    np.savez(data, images=np.zeros((4, 64, 64, 3), np.uint8), labels=np.zeros(4, np.int64))
    code, out, err = run_cli("eval", "--model", programs["dynamic"], "--data", data, "--metric", "clean",
                             "--device", "cpu", "--out", tmp_path / "out")
    assert code == 2 and len(err.strip().splitlines()) == 1, err


# --------------------------------------------------------------------------- the grammars


def _torch_written_expressions():
    """What torch.export's serializer writes (its own `_print_sympy`) for the symbolic sizes of
    classifiers: sums, products, floor division, modulo, min/max, comparisons, infinities."""
    import sympy
    from torch._export.serde.serialize import _print_sympy
    from torch.utils._sympy.functions import (
        CleanDiv, FloorDiv, IntTrueDiv, Mod, PowByNatural, PythonMod, ToFloat,
    )
    from torch.utils._sympy.numbers import int_oo

    s = sympy.Symbol("s77", positive=True, integer=True)
    u = sympy.Symbol("u0", integer=True)
    exprs = [s, s + 1, 2 * s, FloorDiv(s, 2), Mod(s, 2), PythonMod(u, 3), sympy.Max(2, s), sympy.Min(s, 8),
             sympy.Eq(s, 4), s >= 2, s < 9, sympy.Ne(Mod(s, 2), 0), int_oo, -int_oo, sympy.oo,
             sympy.Rational(1, 2) * s, sympy.Float(0.5) * u, PowByNatural(s, 2), CleanDiv(s, 2),
             sympy.And(s > 2, u < 3), sympy.Or(s > 2, sympy.Not(u < 3)), sympy.true, sympy.false, ToFloat(s),
             IntTrueDiv(s, 2), 3072 * FloorDiv(s, 2) - 7, sympy.Integer(-5)]
    return [_print_sympy(e) for e in exprs] + [str(e) for e in exprs]


def test_every_expression_torch_writes_passes():
    for text in _torch_written_expressions():
        check_expression(text)


@pytest.mark.parametrize("text", [
    "__import__('os').system('true')", "Symbol('s0').__class__", "(lambda: 1)()", "Symbol('s0', evil=True)",
    "Symbol('os.system')", "Integer(" + "9" * 40 + ")", "Pow(Integer(10), Integer(100000000))",
    "s0 ** 1000000", "lambdify([], 'x')", "Float('nan; 1')", "eval('1')", "[s0][0]", "f'{s0}'",
    "s0 if s0 else s1", "Add(" * 100 + "s0" + ")" * 100, "x" * 70000, "s0 + ", "s0; s1", "S.Half",
    "Max(*[s0])", "Mul(s0, s1, **{})", "'s0'",
])
def test_expressions_torch_does_not_write_are_refused(text):
    with pytest.raises(UserError):
        check_expression(text)


def test_guards_torch_writes_pass():
    for guard in ["L['x'].size()[0] > 3", "L['x'].size()[0] >= 2", "L['x'].size()[0] <= 4096",
                  "((3072*L['x'].size()[0]) % (2*(L['x'].size()[0] // 2))) == 0",
                  "(L['x'].size()[0] // 2) != 1", "L['x'].stride()[0] == 3072", "L['x'].storage_offset() == 0",
                  "L['args'][0].size()[1] == 3", "math.floor(L['x'].size()[0] / 2) == 2",
                  "not (L['x'].size()[0] == 1)", "max(2, L['x'].size()[0]) == L['x'].size()[0]",
                  "L['x'].size()[0] < math.inf", "torch.sym_float(L['x'].size()[0]) > 1.5"]:
        check_guard(guard)


@pytest.mark.parametrize("guard", [
    "__import__('os')", "L['x'].size()[0] == 2 or open('f', 'w')", "L.clear()", "L['x'].numpy()",
    "math.__dict__", "torch.load('x')", "L['x'].size()[0] == (lambda: 1)()", "L['x' + 'y'].size()[0]",
    "L['x'].size()[0] == 2; import os", "getattr(L, 'x')", "L['x'].__class__", "print(1)",
])
def test_guards_torch_does_not_write_are_refused(guard):
    with pytest.raises(UserError):
        check_guard(guard)


def test_the_symbolic_operators_are_exactly_torchs():
    """The allowed symbolic-int operators are the ones torch.export's serializer handles itself."""
    from torch._export.serde.serialize import _SYM_OPS

    for op in _SYM_OPS:
        check_operator(f"{op.__module__}.{op.__name__}")
    for name in ("torch.ops.aten.conv2d.default", "torch.ops.prims.convert_element_type.default",
                 "torch.ops.higher_order.wrap_with_set_grad_enabled"):
        check_operator(name)
    for name in ("torch.ops.aten.from_file.default", "torch.ops.debugprims.load_tensor.default",
                 "torch.load", "torch.ops.higher_order.cond", "builtins.eval", "torch.ops.aten.conv2d"):
        with pytest.raises(UserError):
            check_operator(name)
