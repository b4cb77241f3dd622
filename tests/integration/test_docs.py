"""The documentation site builds offline with no warning (cross-references checked), and its
command-line reference lists every option of every command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import pytest

pytestmark = pytest.mark.synthetic

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    run = subprocess.run([sys.executable, "-m", "sphinx", "-W", "-n", "--keep-going", "-q", "-b", "html",
                          str(REPO / "docs"), str(out)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-4000:]
    return out


def test_the_cli_reference_lists_every_option_of_every_command(site):
    from energybench.cli.main import cli

    page = (site / "reference" / "cli.html").read_text()

    def walk(command, path):
        yield path, command
        for name, sub in getattr(command, "commands", {}).items():
            yield from walk(sub, f"{path} {name}")

    missing = []
    for path, command in walk(cli, "energybench"):
        assert path.split()[-1] in page, path
        for param in command.params:
            for flag in getattr(param, "opts", []):
                if isinstance(param, click.Option) and flag not in page:
                    missing.append(f"{path} {flag}")
    assert not missing, missing


def test_the_architecture_and_threat_model_pages_are_the_repository_files(site):
    assert "Where a new thing goes" in (site / "explanation" / "architecture.html").read_text()
    assert "Out of scope" in (site / "explanation" / "security.html").read_text()
