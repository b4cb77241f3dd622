"""Names read from the source (core.registry.declared_names) are exactly the names importing the
registries gives, and a mistyped name or path is refused before torch is imported."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from energybench.cli.options import DECLARED, imported_registry_names
from energybench.core.registry import declared_names


@pytest.mark.parametrize("kind", sorted(DECLARED))
def test_declared_names_equal_the_imported_registry(kind):
    assert declared_names(*DECLARED[kind]) == imported_registry_names(kind)


def _package(tmp_path, monkeypatch, source: str) -> str:
    pkg = tmp_path / "declared_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "things.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "declared_pkg"


def test_every_form_of_registration_is_read(tmp_path, monkeypatch):
    package = _package(tmp_path, monkeypatch, """
        @register_thing
        class A:
            name = "alpha"

        @REG.register("beta")
        def b(): ...

        register_thing("gamma", [1, 2])

        class NotRegistered:
            name = "delta"
    """)
    assert declared_names(package, "register_thing") == ["alpha", "gamma"]
    assert declared_names(package, "REG.register") == ["beta"]


@pytest.mark.parametrize("source", [
    "@register_thing\nclass A:\n    name = 'a' + 'b'\n",  # not a literal
    "@register_thing\nclass A:\n    pass\n",  # no name at all
    "for n in ('a', 'b'):\n    register_thing(n)\n",  # computed
])
def test_a_name_that_is_not_a_literal_means_import_the_registry(tmp_path, monkeypatch, source):
    assert declared_names(_package(tmp_path, monkeypatch, source), "register_thing") is None


@pytest.mark.parametrize("argv", [
    ["eval", "--ckpt", "x.pt", "--metric", "pgd-20"],
    ["eval", "--ckpt", "x.pt", "--suite", "robustness"],
    ["eval", "--ckpt", "{missing}", "--suite", "all"],
    ["sample", "--ckpt", "{missing}"],
    ["train", "jem-pp"],
    ["plot", "{missing}"],
])
def test_a_mistake_is_refused_before_torch_is_imported(tmp_path, argv):
    argv = [a.replace("{missing}", str(tmp_path / "none.pt")) for a in argv]
    probe = textwrap.dedent(f"""
        import sys
        from energybench.cli.main import main
        try:
            main({argv!r})
        except SystemExit as exc:
            print("exit", exc.code, "torch" in sys.modules)
    """)
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "exit 2 False", (done.stdout, done.stderr)
    assert len(done.stderr.strip().splitlines()) == 1 and "error:" in done.stderr
