"""The grammars of the text in a `torch.export` program (.pt2) that torch turns into code.

torch.export's loader evaluates three kinds of text: symbolic-shape expressions go through
`sympy.sympify` (Python `eval`), guards are pasted into a function compiled with `exec`, and call
targets are looked up by name in `torch`, `math` and `operator` (`torch.os.system` resolves). Each
kind has a small grammar here, read off what torch.export writes (`torch/_export/serde/
serialize.py`, `torch/export/_unlift.py`, `torch/utils/_sympy/printers.py`):

    expressions    sympy's `srepr` or `str` of integers, symbols (s0, u3, ...) and the shape
                   functions torch registers (Add, Mul, FloorDiv, Mod, Max, Min, Eq, ...)
    guards         comparisons and arithmetic of integers, L['x'].size()[i], .stride()[i],
                   .storage_offset(), and math.floor/ceil/..., min, max, abs
    call targets   ATen and prims operators (except aten.save and aten.from_file, which touch
                   files), the symbolic-int operators of torch.export, and the two wrapper
                   higher-order operators export emits for no_grad and autocast regions
    names          ASCII Python identifiers (dotted for parameter, buffer and module paths)

Integers are bounded: every literal fits in 64 bits and every power has a literal exponent of at
most 64 and a base without another power, so no accepted text takes long to evaluate. The text is
only parsed (`ast.parse`) and walked; nothing here evaluates it.
"""

from __future__ import annotations

import ast
import re

from energybench.core.errors import UserError

MAX_TEXT = 1 << 16  # characters in one expression or guard (torch writes tens)
MAX_DEPTH = 64  # nesting of one expression or guard
MAX_INT_BITS = 64

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")  # ASCII only: Python folds other letters (NFKC)
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


def _is_power(node: ast.AST) -> bool:
    if isinstance(node, ast.BinOp):
        return isinstance(node.op, (ast.Pow, ast.LShift))
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in POWERS


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
                self.power(node.left, node.right)
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

    def power(self, base: ast.AST, exponent: ast.AST) -> None:
        """A power's exponent is an integer literal of at most MAX_EXPONENT and its base holds no
        other power: 3**(10**9) or (2**64)**64 would take torch minutes on every forward."""
        value = _constant_int(exponent)
        if value is None:
            raise self.bad("raises to a power that is not an integer literal")
        if abs(value) > MAX_EXPONENT:
            raise self.bad(f"raises to the power {value} (at most {MAX_EXPONENT})")
        if any(_is_power(inner) for inner in ast.walk(base)):
            raise self.bad("raises a power to a power")

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
        if name in POWERS:
            if len(node.args) != 2:
                raise self.bad(f"calls {name} with {len(node.args)} arguments")
            self.power(node.args[0], node.args[1])
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


def check_name(text, what: str, dotted: bool = False, empty: bool = False) -> str:
    """Refuse anything but an ASCII identifier (a dotted path with `dotted`; "" with `empty`)."""
    pattern = PATH if dotted else IDENTIFIER
    if not isinstance(text, str) or not (pattern.match(text) or (empty and text == "")):
        raise _refuse(f"the {what} {_quote(str(text))} is not a Python name")
    return text
