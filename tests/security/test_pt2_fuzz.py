"""Fuzzing the .pt2 loader: every string torch might turn into code, mutated with payloads.

Hypothesis takes a real export (static and dynamic batch), picks any string in its program JSON
(node and input names, keyword names, pytree keys and contexts inside in/out specs, guards, shape
expressions, call targets, metadata, payload configs) or replaces its sample inputs with another
structure, and writes a payload there: quotes, newlines, backslashes, Unicode look-alikes, and code
that creates a marker file or imports a module that does. Each archive must either be refused in
one line or load and give the original model's logits, and the marker must never appear.
"""

from __future__ import annotations

import io
import json
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from testkit import TinyClassifier

from energybench.core.errors import UserError
from energybench.handles.exported import load_exported

pytestmark = pytest.mark.synthetic

MARKER_MODULE = "energybench_fuzz_marker"


class _Guarded(torch.nn.Module):  # export writes guards_code for the branch on the batch size
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(3 * 32 * 32, 10)

    def forward(self, x):
        return self.fc(x.flatten(1)) if x.shape[0] > 3 else 2 * self.fc(x.flatten(1))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Real exports, their logits on a probe, and a marker that any payload would create."""
    root = tmp_path_factory.mktemp("fuzz")
    marker = root / "PWNED"
    module_dir = root / "modules"
    module_dir.mkdir()
    (module_dir / f"{MARKER_MODULE}.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n")
    sys.path.insert(0, str(module_dir))
    torch.manual_seed(0)
    bases = {}
    for name, model, dynamic in (("static", TinyClassifier(), False), ("dynamic", TinyClassifier(), True),
                                 ("guarded", _Guarded(), "auto")):
        model.eval()
        if dynamic == "auto":
            shapes = {"x": {0: torch.export.Dim.AUTO}}
        elif dynamic:
            shapes = {"x": {0: torch.export.Dim("batch", min=1, max=4096)}}
        else:
            shapes = None
        path = root / f"{name}.pt2"
        torch.export.save(torch.export.export(model, (torch.rand(4, 3, 32, 32),), dynamic_shapes=shapes), str(path))
        x = torch.rand(4, 3, 32, 32)
        with torch.no_grad():
            bases[name] = (path, x, model(x))
    yield {"root": root, "marker": marker, "bases": bases}
    sys.path.remove(str(module_dir))
    sys.modules.pop(MARKER_MODULE, None)


def _members(path: Path) -> list[tuple[zipfile.ZipInfo, bytes]]:
    with zipfile.ZipFile(path) as archive:
        return [(info, archive.read(info.filename)) for info in archive.infolist()]


def _string_slots(value, path=()):
    """Paths to every string in a JSON value, dict keys included; strings holding JSON (in/out
    specs and their contexts) are opened, so the strings inside them are slots too."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*path, ("key", key))
            yield from _string_slots(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _string_slots(item, (*path, index))
    elif isinstance(value, str):
        yield path
        try:
            inner = json.loads(value)
        except ValueError:
            return
        if isinstance(inner, (dict, list)):
            for slot in _string_slots(inner):
                yield (*path, ("json", slot))


def _mutate(value, slot, edit):
    """`value` with the string at `slot` replaced by edit(old string)."""
    head, *rest = slot
    if isinstance(head, tuple) and head[0] == "key":
        return {(edit(k) if k == head[1] else k): v for k, v in value.items()}
    if isinstance(head, tuple) and head[0] == "json":
        return json.dumps(_mutate(json.loads(value), head[1], edit))
    if not rest:
        copy = list(value) if isinstance(value, list) else dict(value)
        copy[head] = edit(value[head])
        return copy
    copy = list(value) if isinstance(value, list) else dict(value)
    copy[head] = _mutate(value[head], tuple(rest), edit)
    return copy


def _payloads(marker: Path) -> list[str]:
    """Breaking characters, and code in the syntactic forms torch's generated source gives it:
    an expression, a statement after a newline, a string literal closed and reopened with either
    quote, a keyword default, a pytree context that names a module to import."""
    touch = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    imp = f'__import__("{MARKER_MODULE}")'
    return [
        "'", '"', "\\", "\n", "\r", "\x00", "\u2028", "ｘ", "é", "x\ny", "x.y", "", " ",
        touch, imp, f"\n{imp}\n", f"\n{touch}\n", f"'); {touch}; ('", f'" + str({imp}) + "',
        f"' + str({imp}) + '", f"'] or {touch} or L['", f"x=x, _={imp}, y", f"x={imp}", f"_={imp}",
        f"{touch} or True", f"# \n{imp}", f"\\\n{imp}", f"Symbol('s0') + 0*({imp})",
        "L['x'].size()[0] <= 3**(10**9)", f"x; {imp}",
        f'{{"__enum__": true, "fqn": "{MARKER_MODULE}:X", "name": "Y"}}',
        f'[{{"__enum__": true, "fqn": "{MARKER_MODULE}:X", "name": "Y"}}]',
        f'["x", "{MARKER_MODULE}"]', "torch.os.system", f"{MARKER_MODULE}.X",
    ]


def _field(slot) -> str:
    """What a slot is, for drawing evenly over kinds of field rather than over the many names."""
    last = slot[-1]
    if isinstance(last, tuple) and last[0] == "json":
        return "json:" + _field(last[1])
    if isinstance(last, tuple):
        return f"key of {slot[-2] if len(slot) > 1 else 'root'}"
    return str(last) if isinstance(last, str) else _field(slot[:-1]) if len(slot) > 1 else "item"


def _check(world, path: Path, base: str) -> str:
    """Refused in one line, or loads and gives the base model's logits; never the marker.
    Returns which of the two happened."""
    _, x, expected = world["bases"][base]
    try:
        model = load_exported(path)
        with torch.no_grad():
            got = model(x)
    except UserError as exc:
        assert "\n" not in str(exc).strip(), str(exc)
        outcome = "refused"
    else:
        assert torch.allclose(got, expected, atol=1e-5)
        outcome = "loaded, same logits"
    assert not world["marker"].exists(), f"{path.name} ran code"
    return outcome


def _write(world, base: str, replace: dict[str, bytes], name: str) -> Path:
    target = world["root"] / name
    with zipfile.ZipFile(target, "w") as out:
        for info, data in _members(world["bases"][base][0]):
            for suffix, new in replace.items():
                if info.filename.endswith(suffix):
                    data = new
            out.writestr(info, data)
    return target


FUZZ = settings(max_examples=200, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@FUZZ
@given(data=st.data())
def test_mutated_program_strings_never_run_code(world, data):
    base = data.draw(st.sampled_from(sorted(world["bases"])), label="base")
    members = dict((info.filename.split("/", 1)[1], blob) for info, blob in _members(world["bases"][base][0]))
    member = data.draw(st.sampled_from(["models/model.json", "data/weights/model_weights_config.json"]),
                       label="member")
    doc = json.loads(members[member])
    by_field: dict[str, list] = {}
    for slot in _string_slots(doc):
        by_field.setdefault(_field(slot), []).append(slot)
    field = data.draw(st.sampled_from(sorted(by_field)), label="field")
    slot = data.draw(st.sampled_from(by_field[field]), label="slot")
    payload = data.draw(st.sampled_from(_payloads(world["marker"])), label="payload")
    how = data.draw(st.sampled_from(["replace", "prefix", "suffix"]), label="how")
    edit = {"replace": lambda old: payload, "prefix": lambda old: payload + old,
            "suffix": lambda old: old + payload}[how]
    mutated = _mutate(doc, slot, edit)
    path = _write(world, base, {member: json.dumps(mutated).encode()}, "mutated.pt2")
    event(_check(world, path, base))


def _structures(marker: Path, x: torch.Tensor):
    keys = st.sampled_from(_payloads(marker) + ["x"])
    leaves = st.one_of(st.just(x), keys, st.integers(-2, 2), st.none())
    nested = st.recursive(leaves, lambda inner: st.one_of(
        st.tuples(inner), st.tuples(inner, inner), st.lists(inner, max_size=2),
        st.dictionaries(keys, inner, max_size=2)), max_leaves=6)
    keyed_image = st.builds(lambda key: ({key: x},), keys)  # forward(x) given a dict: keys reach guards
    return st.one_of(keyed_image, st.just((x,)), nested)


@FUZZ
@given(data=st.data())
def test_sample_inputs_of_any_structure_never_run_code(world, data):
    base = data.draw(st.sampled_from(sorted(world["bases"])), label="base")
    x = world["bases"][base][1]
    args = data.draw(_structures(world["marker"], x), label="args")
    kwargs = data.draw(st.dictionaries(st.sampled_from(_payloads(world["marker"]) + ["x"]),
                                       _structures(world["marker"], x), max_size=2), label="kwargs")
    buffer = io.BytesIO()
    torch.save((args, kwargs), buffer)
    path = _write(world, base, {"data/sample_inputs/model.pt": buffer.getvalue()}, "samples.pt2")
    event(_check(world, path, base))


def _torch_runs_it_and_energybench_refuses(world, path: Path, torch_reads, refusal: str) -> None:
    """The reference half: torch's own loader (`torch_reads`) runs the payload (the marker
    appears); then energybench refuses the same file in one line, and nothing runs."""
    sys.modules.pop(MARKER_MODULE, None)
    try:
        torch_reads()
    except Exception:  # noqa: BLE001  torch may fail after the code has run
        pass
    assert world["marker"].exists()
    world["marker"].unlink()
    sys.modules.pop(MARKER_MODULE, None)
    with pytest.raises(UserError, match=refusal):
        load_exported(path)
    assert not world["marker"].exists()


def test_the_payloads_reach_code_in_torch_itself(world, tmp_path):
    """The reference: torch's own loader runs a payload in a pytree context (it imports the module
    an `__enum__` names), the class of string the fuzzer aims at."""
    base_path = world["bases"]["static"][0]
    members = dict((info.filename.split("/", 1)[1], blob) for info, blob in _members(base_path))
    doc = json.loads(members["models/model.json"])
    graph = doc["graph_module"]["module_call_graph"][0]["signature"]
    spec = json.loads(graph["in_spec"])
    spec[1]["children_spec"][1]["context"] = json.dumps(
        [{"__enum__": True, "fqn": f"{MARKER_MODULE}:X", "name": "Y"}])
    spec[1]["children_spec"][1]["children_spec"] = [{"type": None, "context": None, "children_spec": []}]
    graph["in_spec"] = json.dumps(spec)
    path = _write(world, "static", {"models/model.json": json.dumps(doc).encode()}, "enum.pt2")
    _torch_runs_it_and_energybench_refuses(world, path, lambda: torch.export.load(str(path)),
                                           r"the keyword argument .* is not a Python name")


def test_every_kind_of_field_with_every_payload(world):
    """The exhaustive part: for each base program, each kind of string field (one slot of it) and
    each payload, written in place of the string. Random drawing alone rarely pairs a rare field
    (a pytree context) with the one payload that works there."""
    outcomes = {"refused": 0, "loaded, same logits": 0}
    for base in sorted(world["bases"]):
        members = dict((info.filename.split("/", 1)[1], blob) for info, blob in _members(world["bases"][base][0]))
        doc = json.loads(members["models/model.json"])
        by_field: dict[str, list] = {}
        for slot in _string_slots(doc):
            by_field.setdefault(_field(slot), []).append(slot)
        for field, slots in sorted(by_field.items()):
            slot = slots[len(slots) // 2]
            for payload in _payloads(world["marker"]):
                mutated = _mutate(doc, slot, lambda old: payload)
                path = _write(world, base, {"models/model.json": json.dumps(mutated).encode()}, "sweep.pt2")
                try:
                    outcomes[_check(world, path, base)] += 1
                except AssertionError as exc:
                    raise AssertionError(f"{base}, field {field}, payload {payload!r}: {exc}") from None
    assert outcomes["refused"] > 1000 and outcomes["loaded, same logits"] > 50, outcomes


def test_torch_runs_code_from_sample_input_keys(world):
    """The reference for sample inputs: a dict key in them is pasted into the guard function torch
    compiles when the program becomes a module; energybench refuses anything but tensors in tuples."""
    x = world["bases"]["static"][1]
    buffer = io.BytesIO()
    torch.save((({f'" + str(__import__("{MARKER_MODULE}")) + "': x},), {}), buffer)
    path = _write(world, "static", {"data/sample_inputs/model.pt": buffer.getvalue()}, "keys.pt2")
    _torch_runs_it_and_energybench_refuses(world, path, lambda: torch.export.load(str(path)).module()(x),
                                           r"its sample inputs .* are not a tuple of tensors")
