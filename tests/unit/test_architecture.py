"""The folders are the pipeline (ARCHITECTURE.md): import-linter's layers contract in
pyproject.toml holds, no package imports in a circle (function-local imports included), the
package's top level stays a face of at most five modules, and no module grows past 450 lines."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.synthetic

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "energybench"


def test_the_layers_contract_holds():
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    assert lint, "import-linter is part of the test extra: pip install -e '.[test]'"
    run = subprocess.run([lint, "--config", str(REPO / "pyproject.toml")], cwd=REPO, capture_output=True,
                         text=True)
    assert run.returncode == 0 and "1 kept, 0 broken" in run.stdout, run.stdout[-3000:] + run.stderr[-2000:]


def _imports(path: Path) -> set[str]:
    """Every energybench module `path` imports, at any depth of its code (function-local too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("energybench"):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("energybench"))
    return found


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_no_package_imports_in_a_circle():
    """Between packages (energybench.X), counting every import: a package's own modules may import
    each other, but no chain of imports leads from one package back to itself."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}

    def package(name: str) -> str | None:
        parts = name.split(".")
        return ".".join(parts[:2]) if len(parts) > 1 and (PACKAGE / parts[1]).is_dir() else None

    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        source = package(name)
        if source is None:
            continue
        for target in map(package, _imports(path)):
            if target is not None and target != source:
                edges.setdefault(source, set()).add(target)

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in edges.get(start, ()):
            if nxt == goal or (nxt not in seen and (seen.add(nxt) or reaches(nxt, goal, seen))):
                return True
        return False

    circles = sorted(p for p in edges if reaches(p, p, set()))
    assert not circles, f"packages in an import circle: {circles}"


def test_the_top_level_is_a_small_face():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= 5, top


def test_no_module_is_over_450_lines():
    long = {str(p.relative_to(REPO)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 450}
    assert not long, long


def test_no_function_is_over_80_lines():
    long = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 80:
                long.append(f"{path.relative_to(REPO)}:{node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert not long, long
