"""A small name -> object registry shared by models, recipes and metrics."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path
from typing import Callable, Generic, Iterator, TypeVar

from energybench.core.errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects; an unknown name raises a UserError that lists the known ones."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise UserError(
                f"unknown {self.kind} {name!r}; known {self.kind}s: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def declared_names(package: str, marker: str) -> list[str] | None:
    """The names a package's modules register, read from their source without importing them
    (so a misspelt name is told in a fraction of a second, before torch loads).

    marker: the registering callable as the modules write it, e.g. "register_metric" or
    "MODELS.register". Three forms are read: a class decorated with `@marker` and a literal
    `name = "..."` in its body; a decorator `@marker("name")`; a module-level call
    `marker("name", ...)`. None when any registration names something other than a literal (the
    caller then imports the registry); tests compare these names with the imported registry's."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    names: set[str] = set()
    for folder in spec.submodule_search_locations:
        for path in sorted(Path(folder).rglob("*.py")):
            found = _registered_in(ast.parse(path.read_text(encoding="utf-8"), str(path)), marker)
            if found is None:
                return None
            names |= found
    return sorted(names)


def _dotted(node: ast.AST) -> str | None:
    """`a.b.c` for a Name or Attribute chain, else None."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value)
        return f"{head}.{node.attr}" if head else None
    return None


def _literal_first_argument(call: ast.Call) -> str | None:
    first = call.args[0] if call.args else None
    return first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else None


def _class_name_attribute(cls: ast.ClassDef) -> str | None:
    for statement in cls.body:
        if (isinstance(statement, ast.Assign) and len(statement.targets) == 1
                and isinstance(statement.targets[0], ast.Name) and statement.targets[0].id == "name"
                and isinstance(statement.value, ast.Constant) and isinstance(statement.value.value, str)):
            return statement.value.value
    return None


def _registered_in(tree: ast.Module, marker: str) -> set[str] | None:
    """The literal names one module registers with `marker`; None if one is not a literal."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for decorator in node.decorator_list:
                if _dotted(decorator) == marker:  # @register_metric on a class with name = "..."
                    name = _class_name_attribute(node)
                    if name is None:
                        return None
                    names.add(name)
        if isinstance(node, ast.Call) and _dotted(node.func) == marker:  # @MODELS.register("x"), register_suite("x", ...)
            name = _literal_first_argument(node)
            if name is None:
                return None
            names.add(name)
    return names
