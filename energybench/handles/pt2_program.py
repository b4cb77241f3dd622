"""A `torch.export` program's JSON (`models/<name>.json` of a .pt2), rebuilt from an allow-list.

`sanitize_program` does not look for bad strings: it builds a new program out of the parts it
knows, and every string it copies is checked against the grammar of its field (`pt2_grammar`):

    names, keyword names, module and parameter paths    ASCII identifiers (dotted for paths)
    shape expressions (expr_str)                        sympy text torch.export writes
    guards (guards_code)                                comparisons of input sizes and integers
    call targets (target, as_operator)                  ATen/prims operators, torch.export's own
    call signatures (in_spec, out_spec)                 tuples, lists and dicts with identifier keys
    string arguments (as_string)                        kept as data: torch passes them to operators
    device types, torch version, NaN/Infinity spellings fixed forms

A field it does not know, a custom (TorchScript or Python) object, an input that is not one image
tensor, or an output that mutates a buffer refuses the whole program. Node and graph `metadata`
(stack traces, module paths, custom annotations: text torch prints into generated source as
comments) is dropped: nothing in it is needed to run the graph. Nothing here evaluates the text.
"""

from __future__ import annotations

import json
import math

from energybench.handles.pt2_grammar import (
    DEVICE, MAX_TEXT, VERSION, ProgramRefused, _quote, _refuse, check_expression, check_guard, check_name,
    check_operator,
)

MAX_JSON_DEPTH = 400  # nesting of the program's JSON (a WRN program is about 12 deep)

# Every field of torch.export's program schema that holds text, by what the text is.
NAME_FIELDS = frozenset({"name", "as_name", "forward_arg_names", "field_names", "verifiers",
                         "path_name"})  # path_name: a payload file, in weights/constants configs
PATH_FIELDS = frozenset({"parameter_name", "buffer_name", "tensor_constant_name", "fqn",
                         "user_input_name"})
EMPTY_ALLOWED = frozenset({"fqn", "name"})  # the root module's path; positional higher-order args
EXPRESSION_FIELDS = frozenset({"expr_str"})
GUARD_FIELDS = frozenset({"guards_code"})
OPERATOR_FIELDS = frozenset({"target", "as_operator"})
STRING_CONSTANT_FIELDS = frozenset({"as_string", "as_strings"})  # operator arguments (data)
TREESPEC_FIELDS = frozenset({"in_spec", "out_spec"})
DEVICE_FIELDS = frozenset({"type"})
VERSION_FIELDS = frozenset({"torch_version"})
DROPPED_FIELDS = frozenset({"metadata"})
OBJECT_FIELDS = frozenset({"as_custom_obj", "class_fqn", "custom_obj_name", "custom_obj",
                           "custom_obj_values"})
INPUT_KINDS = frozenset({"user_input", "parameter", "buffer", "tensor_constant"})
OUTPUT_KINDS = frozenset({"user_output"})
FLOAT_SPELLINGS = frozenset({"NaN", "Infinity", "-Infinity"})  # how torch.export writes non-finite floats

# Call signatures: pytree nodes torch.export writes for a forward(x) and its (args, kwargs).
TREESPEC_PROTOCOLS = frozenset({1})
SEQUENCE_TYPES = frozenset({"builtins.tuple", "builtins.list"})
MAPPING_TYPES = frozenset({"builtins.dict", "collections.OrderedDict"})
MAX_TREESPEC_NODES = 10_000


# --------------------------------------------------------------------------- call signatures


def _treespec_node(node, depth: int, budget: list[int]) -> dict:
    """One pytree node, rebuilt: {"type", "context", "children_spec"} with a known container
    type, a context of "null" (sequences) or a JSON list of identifier keys (mappings), and
    children of the same form. torch.export's pytree loader imports any module a context names
    (`enum_object_hook`), so nothing else passes."""
    budget[0] -= 1
    if depth > 64 or budget[0] < 0:
        raise _refuse("a call signature is nested too deeply")
    if not isinstance(node, dict) or set(node) != {"type", "context", "children_spec"} \
            or not isinstance(node["children_spec"], list):
        raise _refuse("a call signature holds a node torch.export does not write")
    kind, context, children = node["type"], node["context"], node["children_spec"]
    if kind is None:
        if context is not None or children:
            raise _refuse("a call signature holds a leaf with children")
        return {"type": None, "context": None, "children_spec": []}
    if kind in SEQUENCE_TYPES:
        if context != "null":
            raise _refuse(f"a call signature gives a {kind.split('.')[-1]} the context {_quote(str(context))}")
        clean_context = "null"
    elif kind in MAPPING_TYPES:
        try:
            keys = json.loads(context) if isinstance(context, str) and len(context) <= MAX_TEXT else None
        except (ValueError, RecursionError):
            keys = None
        if not isinstance(keys, list) or len(keys) != len(children):
            raise _refuse(f"a call signature's keys {_quote(str(context))} are not a list of names")
        clean_context = json.dumps([check_name(key, "keyword argument") for key in keys])
    else:
        raise _refuse(f"a call signature names the type {_quote(str(kind))} "
                      f"(only tuples, lists and dicts of tensors are accepted)")
    return {"type": kind, "context": clean_context,
            "children_spec": [_treespec_node(child, depth + 1, budget) for child in children]}


def sanitize_treespec(text: str) -> str:
    """An in_spec/out_spec (pytree JSON inside a JSON string), rebuilt from the allowed nodes."""
    if not isinstance(text, str) or len(text) > MAX_TEXT * 16:
        raise _refuse("a call signature is not text of a sensible size")
    try:
        spec = json.loads(text)
    except (ValueError, RecursionError):
        raise _refuse(f"a call signature {_quote(text)} is not JSON") from None
    if not (isinstance(spec, list) and len(spec) == 2 and spec[0] in TREESPEC_PROTOCOLS
            and not isinstance(spec[0], bool)):
        raise _refuse(f"a call signature {_quote(text)} is not a pytree spec torch.export writes")
    return json.dumps([spec[0], _treespec_node(spec[1], 0, [MAX_TREESPEC_NODES])])


# --------------------------------------------------------------------------- the program


def _sanitize_string(text: str, field: str) -> str:
    if text in FLOAT_SPELLINGS:  # a float constant (JSON has no NaN); read back as a float
        return text
    if field in EXPRESSION_FIELDS:
        check_expression(text)
    elif field in GUARD_FIELDS:
        check_guard(text)
    elif field in OPERATOR_FIELDS:
        check_operator(text)
    elif field in NAME_FIELDS or field in PATH_FIELDS:
        check_name(text, field, dotted=field in PATH_FIELDS, empty=field in EMPTY_ALLOWED)
    elif field in STRING_CONSTANT_FIELDS:
        if len(text) > MAX_TEXT:
            raise _refuse(f"a string argument is {len(text):,} characters long")
    elif field in TREESPEC_FIELDS:
        return sanitize_treespec(text)
    elif field in DEVICE_FIELDS:
        if not DEVICE.match(text):
            raise _refuse(f"the device {_quote(text)} is not a torch device type")
    elif field in VERSION_FIELDS:
        if not VERSION.match(text):
            raise _refuse(f"the torch version {_quote(text)} is not a version")
    else:
        raise _refuse(f"its field {field!r} holds text energybench does not check")
    return text


def _sanitize(value, field: str, depth: int):
    """A copy of `value` (the part of the program under `field`) made of checked parts only."""
    if depth > MAX_JSON_DEPTH:
        raise _refuse(f"its program is nested more than {MAX_JSON_DEPTH} deep")
    if isinstance(value, dict):
        clean = {}
        for key, item in value.items():
            if key in OBJECT_FIELDS and item not in (None, "", {}, []):
                raise _refuse("it holds a custom (TorchScript or Python) object")
            if not isinstance(key, str) or not _is_key(key):
                raise _refuse(f"its program has the key {_quote(str(key))}, which is not a name")
            if key in DROPPED_FIELDS:
                clean[key] = {} if isinstance(item, dict) else None
                continue
            clean[key] = _sanitize(item, key, depth + 1)
        return clean
    if isinstance(value, list):
        return [_sanitize(item, field, depth + 1) for item in value]
    if isinstance(value, str):
        return _sanitize_string(value, field)
    if isinstance(value, float) and not math.isfinite(value):
        raise _refuse(f"its field {field!r} holds a bare {value} (torch.export writes it as text)")
    if isinstance(value, (int, float, bool, type(None))):
        return value
    raise _refuse(f"its field {field!r} holds a {type(value).__name__}")


def _is_key(key: str) -> bool:
    try:
        check_name(key, "key", dotted=True)
    except ProgramRefused:
        return False
    return True


def _check_signature(program: dict) -> None:
    """One image tensor in, logits out: the only inputs and outputs a classifier has."""
    try:
        signature = program["graph_module"]["signature"]
        inputs, outputs = signature["input_specs"], signature["output_specs"]
        kinds_in = [next(iter(spec)) for spec in inputs]
        kinds_out = [next(iter(spec)) for spec in outputs]
    except (KeyError, TypeError, StopIteration):
        raise _refuse("its program has no readable signature (inputs and outputs)") from None
    unknown = [k for k in kinds_in if k not in INPUT_KINDS]
    if unknown:
        raise _refuse(f"the program takes a {unknown[0]} input; a classifier takes one image tensor")
    users = [spec["user_input"] for spec in inputs if "user_input" in spec]
    if len(users) != 1 or not isinstance(users[0], dict) or "as_tensor" not in users[0].get("arg", {}):
        raise _refuse("the program must take exactly one input, an image tensor "
                      f"(it takes {len(users)} user inputs, or a non-tensor one)")
    mutations = [k for k in kinds_out if k not in OUTPUT_KINDS]
    if mutations:
        raise _refuse(f"the program has a {mutations[0]} output (was it exported in training mode? "
                      f"export model.eval())")


def sanitize_program(text: bytes | str) -> dict:
    """Parse a program's JSON and rebuild it from checked parts (see the module docstring);
    returns the rebuilt program, which is what torch is given to read."""
    try:
        program = json.loads(text)
    except RecursionError:
        raise _refuse("its program is nested too deeply to read") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise _refuse(f"its program is not valid JSON ({str(exc)[:80]})") from None
    if not isinstance(program, dict) or "graph_module" not in program:
        raise _refuse("its program JSON is not a torch.export program")
    clean = _sanitize(program, "", 0)
    _check_signature(clean)
    return clean


def sanitize_payload_config(text: bytes, constants: bool) -> dict:
    """A weights or constants config ({"config": {fqn: {"path_name", "is_param", "use_pickle",
    "tensor_meta"}}}), rebuilt from checked parts. A pickled payload (`use_pickle`, read with
    pickle by torch) or a constant that is not a tensor (a Python or TorchScript object) is refused."""
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError, UnicodeDecodeError):
        doc = None
    entries = doc.get("config") if isinstance(doc, dict) and set(doc) == {"config"} else None
    if not isinstance(entries, dict) or not all(
            isinstance(meta, dict) and isinstance(meta.get("path_name"), str) for meta in entries.values()):
        raise _refuse("a payload config is not a dict of names to payload entries")
    for fqn, meta in entries.items():
        if meta.get("use_pickle") is not False:
            raise _refuse(f"{_quote(fqn)} is stored pickled (loading it could run code)")
        if constants and not meta["path_name"].startswith("tensor_"):
            raise _refuse(f"constant {_quote(fqn)} is a Python or TorchScript object")
    return _sanitize(doc, "", 0)
