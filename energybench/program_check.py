"""The text of a `torch.export` program (.pt2), checked before torch reads any of it.

torch.export's loader turns text from the program's JSON (`models/model.json`) into code:
symbolic-shape expressions (`expr_str`) go through `sympy.sympify`, which evaluates Python;
`guards_code` is compiled with `exec` when the program becomes a module; call targets are looked
up by name in `torch`, `math` and `operator` (`torch.os.system` resolves); names and keyword
names end up in the Python source FX generates. So every string in the program is checked here
against the forms torch.export itself writes (read off `torch/_export/serde/serialize.py`,
`torch/export/_unlift.py` and `torch/utils/_sympy/printers.py`):

    expressions    sympy's `srepr` or `str` of integers, symbols (s0, u3, ...) and the shape
                   functions torch registers (Add, Mul, FloorDiv, Mod, Max, Min, Eq, ...)
    guards         comparisons and arithmetic of integers, L['x'].size()[i], .stride()[i],
                   .storage_offset(), and math.floor/ceil/..., min, max, abs
    call targets   ATen and prims operators (except aten.save and aten.from_file, which touch
                   files), the symbolic-int operators of torch.export, and the two wrapper
                   higher-order operators export emits for no_grad and autocast regions
    names          Python identifiers (dotted for parameter, buffer and module paths)

Anything else is refused: a field this module does not know, a custom (TorchScript) object, an
input that is not one image tensor, an output that mutates a buffer. The text is only parsed
(`json`, `ast.parse`) and walked; nothing here evaluates it.
"""

from __future__ import annotations

import ast
import json
import re

from energybench.errors import UserError

MAX_TEXT = 1 << 16  # characters in one expression or guard (torch writes tens)
MAX_DEPTH = 64  # nesting of one expression or guard
MAX_JSON_DEPTH = 400  # nesting of the program's JSON (a WRN program is about 12 deep)
MAX_INT_BITS = 64

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
PATH = re.compile(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*\Z")  # module / parameter paths: layer1.0.conv1.weight
SYMBOL = re.compile(r"[a-z]{1,5}[0-9]{1,9}\Z")  # torch's shape symbols: s0, s77, u3, zuf0
NUMBER = re.compile(r"[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?\Z")
DEVICE = re.compile(r"(cpu|cuda|meta|mps|xpu|hpu|privateuseone)\Z")
VERSION = re.compile(r"[0-9A-Za-z.+<=_-]{1,64}\Z")

# Functions an expression may call: sympy's core types as srepr writes them and the functions
# torch.export's deserializer puts in scope (torch.utils._sympy.functions).
EXPRESSION_FUNCTIONS = frozenset({
    "Symbol", "Integer", "Rational", "Float", "Add", "Mul", "Pow", "Mod", "Max", "Min", "Abs",
    "Eq", "Ne", "Lt", "Le", "Gt", "Ge", "StrictLessThan", "StrictGreaterThan", "LessThan",
    "GreaterThan", "Equality", "Unequality", "And", "Or", "Not", "floor", "ceiling", "Piecewise",
    "ExprCondPair", "FloorDiv", "ModularIndexing", "Where", "PythonMod", "CleanDiv", "CeilToInt",
    "FloorToInt", "CeilDiv", "LShift", "RShift", "PowByNatural", "FloatPow", "FloatTrueDiv",
    "IntTrueDiv", "IsNonOverlappingAndDenseIndicator", "TruncToFloat", "TruncToInt", "RoundToInt",
    "RoundDecimal", "ToFloat", "Identity", "IntInfinity", "NegativeIntInfinity",
})
EXPRESSION_CONSTANTS = frozenset({"true", "false", "True", "False", "oo", "zoo", "nan", "int_oo"})
SYMBOL_ASSUMPTIONS = frozenset({
    "positive", "negative", "nonnegative", "nonpositive", "integer", "real", "finite", "zero",
    "nonzero", "even", "odd", "extended_real",
})
POWERS = frozenset({"Pow", "PowByNatural", "FloatPow", "LShift"})
MAX_EXPONENT = 64

# Names a guard may use: the builtins and math functions torch's Python printer writes, and the
# symbolic functions it prints as torch.<name>.
GUARD_FUNCTIONS = frozenset({"abs", "min", "max", "round", "int", "float", "bool"})
GUARD_MATH = frozenset({"floor", "ceil", "trunc", "sqrt", "log2", "isnan", "sin", "cos", "tan",
                        "asin", "acos", "atan", "sinh", "cosh", "tanh", "inf", "nan"})
GUARD_TORCH = frozenset({"sym_float", "sym_int", "sym_max", "sym_min", "sym_not", "sym_ite", "_sym_sqrt"})
GUARD_TENSOR_METHODS = frozenset({"size", "stride", "storage_offset", "dim", "numel"})

# Call targets (serialized names, as torch.export writes them).
SYMBOLIC_OPERATORS = frozenset({
    "_operator.add", "_operator.and_", "_operator.eq", "_operator.floordiv", "_operator.ge",
    "_operator.gt", "_operator.le", "_operator.lshift", "_operator.lt", "_operator.mod",
    "_operator.mul", "_operator.ne", "_operator.neg", "_operator.or_", "_operator.pos",
    "_operator.pow", "_operator.rshift", "_operator.sub", "_operator.truediv", "math.trunc",
    "torch._sym_sqrt", "torch.sym_float", "torch.sym_int", "torch.sym_ite", "torch.sym_max",
    "torch.sym_min", "torch.sym_not",
})
HIGHER_ORDER_OPERATORS = frozenset({
    "torch.ops.higher_order.wrap_with_set_grad_enabled", "torch.ops.higher_order.wrap_with_autocast",
})
OPERATOR = re.compile(r"torch\.ops\.(aten|prims)\.([A-Za-z_][A-Za-z0-9_]*)\.([A-Za-z_][A-Za-z0-9_]*)\Z")
FILE_OPERATORS = frozenset({"save", "from_file"})  # aten ops that write or read a named file

# Every field of torch.export's program schema that holds text, by what the text is.
NAME_FIELDS = frozenset({"name", "as_name", "forward_arg_names", "field_names", "verifiers"})
PATH_FIELDS = frozenset({"parameter_name", "buffer_name", "tensor_constant_name", "fqn",
                         "user_input_name"})
EXPRESSION_FIELDS = frozenset({"expr_str"})
GUARD_FIELDS = frozenset({"guards_code"})
OPERATOR_FIELDS = frozenset({"target", "as_operator"})
STRING_CONSTANT_FIELDS = frozenset({"as_string", "as_strings"})  # arguments, written with repr()
TREESPEC_FIELDS = frozenset({"in_spec", "out_spec"})
DEVICE_FIELDS = frozenset({"type"})
VERSION_FIELDS = frozenset({"torch_version"})
OBJECT_FIELDS = frozenset({"as_custom_obj", "class_fqn", "custom_obj_name", "custom_obj",
                           "custom_obj_values"})
INPUT_KINDS = frozenset({"user_input", "parameter", "buffer", "tensor_constant"})
OUTPUT_KINDS = frozenset({"user_output"})


class ProgramRefused(UserError):
    """The program holds something torch would run as code, or that energybench cannot check."""


def _refuse(why: str) -> ProgramRefused:
    return ProgramRefused(why)


# --------------------------------------------------------------------------- expressions


def _parse(text: str, what: str) -> ast.AST:
    if not isinstance(text, str):
        raise _refuse(f"a {what} is a {type(text).__name__}, not text")
    if len(text) > MAX_TEXT:
        raise _refuse(f"a {what} is {len(text):,} characters long (at most {MAX_TEXT:,})")
    try:
        return ast.parse(text, mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise _refuse(f"the {what} {_quote(text)} is not an expression torch.export writes") from None


def _quote(text: str, limit: int = 80) -> str:
    shown = text if len(text) <= limit else text[:limit] + "..."
    return repr(shown)


def _small_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value.bit_length() <= MAX_INT_BITS


def _constant_int(node: ast.AST) -> int | None:
    """The value of an integer literal, -literal, or Integer(literal); None otherwise."""
    if isinstance(node, ast.Constant) and _small_int(node.value):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        inner = _constant_int(node.operand)
        return None if inner is None else (-inner if isinstance(node.op, ast.USub) else inner)
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Integer"
            and len(node.args) == 1 and not node.keywords):
        return _constant_int(node.args[0])
    return None


_ARITHMETIC = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow, ast.BitAnd,
               ast.BitOr, ast.LShift, ast.RShift)
_COMPARISONS = (ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE)


class _Grammar:
    """A walk of an `ast` tree that allows only the node kinds of one expression language."""

    what = "expression"

    def __init__(self, text: str):
        self.text = text

    def bad(self, detail: str) -> ProgramRefused:
        return _refuse(f"the {self.what} {_quote(self.text)} is not one torch.export writes ({detail}), "
                       f"and torch would evaluate it as code")

    def check(self, node: ast.AST, depth: int = 0) -> None:
        if depth > MAX_DEPTH:
            raise self.bad(f"is nested more than {MAX_DEPTH} deep")
        if isinstance(node, ast.Constant):
            self.constant(node)
        elif isinstance(node, ast.BinOp) and isinstance(node.op, _ARITHMETIC):
            if isinstance(node.op, (ast.Pow, ast.LShift)):
                self.exponent(node.right)
            self.check(node.left, depth + 1)
            self.check(node.right, depth + 1)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd, ast.Not, ast.Invert)):
            self.check(node.operand, depth + 1)
        elif isinstance(node, ast.Compare) and all(isinstance(op, _COMPARISONS) for op in node.ops):
            for part in (node.left, *node.comparators):
                self.check(part, depth + 1)
        elif isinstance(node, ast.BoolOp):
            for part in node.values:
                self.check(part, depth + 1)
        else:
            self.other(node, depth)

    def constant(self, node: ast.Constant) -> None:
        value = node.value
        if isinstance(value, bool) or _small_int(value):
            return
        if isinstance(value, float) and value == value and abs(value) != float("inf"):
            return
        raise self.bad(f"holds the constant {_quote(repr(value), 40)}")

    def exponent(self, node: ast.AST) -> None:
        value = _constant_int(node)
        if value is not None and abs(value) > MAX_EXPONENT:
            raise self.bad(f"raises to the power {value} (at most {MAX_EXPONENT})")

    def other(self, node: ast.AST, depth: int) -> None:
        raise self.bad(f"uses {type(node).__name__}")


class _ExpressionGrammar(_Grammar):
    """sympy expressions as torch.export serializes them (srepr, or str in older archives)."""

    what = "shape expression"

    def other(self, node: ast.AST, depth: int) -> None:
        if isinstance(node, ast.Name):
            if node.id in EXPRESSION_CONSTANTS or SYMBOL.match(node.id):
                return
            raise self.bad(f"names {node.id!r}")
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
            raise self.bad(f"uses {type(node).__name__}")
        name = node.func.id
        if name not in EXPRESSION_FUNCTIONS:
            raise self.bad(f"calls {name!r}")
        if name == "Symbol":
            self.symbol(node)
            return
        if name == "Float":
            self.float_(node)
            return
        if node.keywords:
            raise self.bad(f"passes keywords to {name}")
        if name in POWERS and len(node.args) == 2:
            self.exponent(node.args[1])
        for arg in node.args:
            self.check(arg, depth + 1)

    def symbol(self, node: ast.Call) -> None:
        if not (len(node.args) == 1 and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str) and SYMBOL.match(node.args[0].value)):
            raise self.bad("names a symbol torch does not write")
        for keyword in node.keywords:
            if keyword.arg not in SYMBOL_ASSUMPTIONS or not (
                    isinstance(keyword.value, ast.Constant) and isinstance(keyword.value.value, bool)):
                raise self.bad(f"gives a symbol the assumption {keyword.arg!r}")

    def float_(self, node: ast.Call) -> None:
        if not node.args or len(node.args) > 2:
            raise self.bad("writes a Float torch does not write")
        value = node.args[0]
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            if not NUMBER.match(value.value):
                raise self.bad("writes a Float torch does not write")
        else:
            self.check(value, 1)
        for keyword in node.keywords:
            if keyword.arg not in ("precision", "dps") or _constant_int(keyword.value) is None:
                raise self.bad("writes a Float torch does not write")
        for extra in node.args[1:]:
            if _constant_int(extra) is None:
                raise self.bad("writes a Float torch does not write")


class _GuardGrammar(_Grammar):
    """Shape guards as torch.export writes them: integers and the sizes of the inputs."""

    what = "guard"

    def other(self, node: ast.AST, depth: int) -> None:
        if self.input_property(node):
            return
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id == "math" and node.attr in ("inf", "nan"):
            return
        if isinstance(node, ast.Call) and not node.keywords and self.function(node.func):
            for arg in node.args:
                self.check(arg, depth + 1)
            return
        raise self.bad(f"uses {type(node).__name__}")

    def function(self, func: ast.AST) -> bool:
        if isinstance(func, ast.Name):
            return func.id in GUARD_FUNCTIONS
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            allowed = {"math": GUARD_MATH, "torch": GUARD_TORCH}.get(func.value.id, ())
            return func.attr in allowed
        return False

    def input_property(self, node: ast.AST) -> bool:
        """L['x'], L['x'][0], L['x'].size()[2], L['x'].stride()[0], L['x'].storage_offset()."""
        if isinstance(node, ast.Subscript) and _constant_int(node.slice) is not None:
            if self.input_property(node.value):
                return True
        if isinstance(node, ast.Call) and not node.args and not node.keywords \
                and isinstance(node.func, ast.Attribute) and node.func.attr in GUARD_TENSOR_METHODS:
            return self.input(node.func.value)
        return self.input(node)

    def input(self, node: ast.AST) -> bool:
        while isinstance(node, ast.Subscript):
            key = node.slice
            if not (isinstance(key, ast.Constant) and (
                    (isinstance(key.value, str) and IDENTIFIER.match(key.value)) or _small_int(key.value))):
                return False
            node = node.value
        return isinstance(node, ast.Name) and node.id == "L"


def check_expression(text: str) -> None:
    """Refuse a symbolic-shape expression unless it is sympy text torch.export writes."""
    _ExpressionGrammar(text).check(_parse(text, "shape expression"))


def check_guard(text: str) -> None:
    """Refuse a guard unless it is a comparison of input sizes and integers."""
    _GuardGrammar(text).check(_parse(text, "guard"))


def check_operator(text: str) -> None:
    """Refuse a call target unless it is an ATen/prims operator or one of torch.export's own."""
    if not isinstance(text, str):
        raise _refuse(f"a call target is a {type(text).__name__}, not text")
    if text in SYMBOLIC_OPERATORS or text in HIGHER_ORDER_OPERATORS:
        return
    match = OPERATOR.match(text)
    if match and match.group(2) not in FILE_OPERATORS:
        return
    if match:
        raise _refuse(f"the program calls {text}, which reads or writes a file")
    raise _refuse(f"the program calls {_quote(text)}, which is not an ATen operator "
                  f"(custom operators and Python functions are not loaded)")


# --------------------------------------------------------------------------- the program


def _check_treespec(text: str) -> None:
    try:
        spec = json.loads(text)
    except (ValueError, RecursionError):
        raise _refuse(f"a call signature {_quote(text)} is not JSON") from None
    stack = [spec]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            kind = item.get("type")
            if kind is not None and not (isinstance(kind, str) and PATH.match(kind)):
                raise _refuse(f"a call signature names the type {_quote(str(kind))}")
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif not isinstance(item, (str, int, float, bool, type(None))):
            raise _refuse("a call signature holds an unknown value")


def _check_name(text, field: str) -> None:
    """Identifiers; dotted paths for parameters and modules; "" for the root module's path and for
    the positional arguments of higher-order operators."""
    pattern = PATH if field in PATH_FIELDS else IDENTIFIER
    if not isinstance(text, str) or not (pattern.match(text) or (field in ("fqn", "name") and text == "")):
        raise _refuse(f"the {field} {_quote(str(text))} is not a Python name")


FLOAT_SPELLINGS = frozenset({"NaN", "Infinity", "-Infinity"})  # how torch.export writes non-finite floats


def _check_string(text: str, field: str, inside_metadata: bool) -> None:
    if inside_metadata:  # stack traces and module paths: shown to people, never run
        return
    if text in FLOAT_SPELLINGS:  # a float constant (JSON has no NaN); read back as a float
        return
    if field in EXPRESSION_FIELDS:
        check_expression(text)
    elif field in GUARD_FIELDS:
        check_guard(text)
    elif field in OPERATOR_FIELDS:
        check_operator(text)
    elif field in NAME_FIELDS or field in PATH_FIELDS:
        _check_name(text, field)
    elif field in STRING_CONSTANT_FIELDS:
        if len(text) > MAX_TEXT:
            raise _refuse(f"a string argument is {len(text):,} characters long")
    elif field in TREESPEC_FIELDS:
        _check_treespec(text)
    elif field in DEVICE_FIELDS:
        if not DEVICE.match(text):
            raise _refuse(f"the device {_quote(text)} is not a torch device type")
    elif field in VERSION_FIELDS:
        if not VERSION.match(text):
            raise _refuse(f"the torch version {_quote(text)} is not a version")
    else:
        raise _refuse(f"its field {field!r} holds text energybench does not check")


def _walk(value, field: str, inside_metadata: bool, depth: int) -> None:
    if depth > MAX_JSON_DEPTH:
        raise _refuse(f"its program is nested more than {MAX_JSON_DEPTH} deep")
    if isinstance(value, dict):
        for key, item in value.items():
            if key in OBJECT_FIELDS and item not in (None, "", {}, []):
                raise _refuse("it holds a custom (TorchScript or Python) object")
            if not PATH.match(key):
                raise _refuse(f"its program has the key {_quote(key)}, which is not a name")
            _walk(item, key, inside_metadata or key == "metadata", depth + 1)
    elif isinstance(value, list):
        for item in value:
            _walk(item, field, inside_metadata, depth + 1)
    elif isinstance(value, str):
        _check_string(value, field, inside_metadata)
    elif not isinstance(value, (int, float, bool, type(None))):
        raise _refuse(f"its field {field!r} holds a {type(value).__name__}")


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


def check_program(text: bytes | str) -> dict:
    """Parse a program's JSON (`models/<name>.json` of a .pt2) and refuse it unless every string
    in it is of a form torch.export writes; returns the parsed program."""
    try:
        program = json.loads(text)
    except RecursionError:
        raise _refuse("its program is nested too deeply to read") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise _refuse(f"its program is not valid JSON ({str(exc)[:80]})") from None
    if not isinstance(program, dict) or "graph_module" not in program:
        raise _refuse("its program JSON is not a torch.export program")
    _walk(program, "", False, 0)
    _check_signature(program)
    return program
