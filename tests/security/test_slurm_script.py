"""The generated slurm.sh runs exactly the plan's commands: values with shell syntax in them are
quoted, and values with control characters (a newline would end a comment line and start a
command) are refused where they are given."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from energybench.core.errors import UserError
from energybench.workflows.jobs import write_plan

pytestmark = pytest.mark.synthetic


def _stub(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text(f"#!/bin/bash\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def test_shell_syntax_in_values_reaches_the_command_verbatim(tmp_path):
    marker = tmp_path / "PWNED"
    weird = tmp_path / "data $(touch PWNED) `touch PWNED` ' \" ; & | x.npz"  # run from tmp_path
    weird.write_bytes(b"")
    path = write_plan("ci", tmp_path / "plan", tmp_path / "runs", {"cifar10": str(weird)},
                      only="normal", inception_weights="w'$(touch PWNED).pth", device="cpu")
    script = (path.parent / "slurm.sh").read_text()
    assert subprocess.run(["bash", "-n", "-c", script]).returncode == 0
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _stub(bin_dir, "torchrun", 'printf "%s\\0" "$@" > "$ARGS_OUT"')
    _stub(bin_dir, "python", f'exec {sys.executable} "$@"')
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_ARRAY_TASK_ID": "0",
           "ARGS_OUT": str(tmp_path / "args")}
    run = subprocess.run(["bash", str(path.parent / "slurm.sh")], env=env, capture_output=True, text=True,
                         cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    args = (tmp_path / "args").read_bytes().split(b"\0")[:-1]
    job = json.loads(path.read_text())["jobs"][0]
    assert [a.decode() for a in args] == ["--standalone", "--nproc_per_node", "1", "-m", "energybench",
                                          *job["command"][1:]]
    assert str(weird) in job["command"] and not marker.exists()


@pytest.mark.parametrize("option", ["data", "inception_weights", "device"])
def test_a_newline_in_a_value_is_refused_before_anything_is_written(option, tmp_path):
    marker = tmp_path / "PWNED"
    evil = f"x\ntouch {marker}\n#"
    kwargs = {"data": {"cifar10": str(tmp_path / "d.npz")}, "inception_weights": None, "device": "cpu"}
    kwargs[option] = {"cifar10": evil} if option == "data" else evil
    with pytest.raises(UserError, match=r"holds a control character") as exc:
        write_plan("ci", tmp_path / "plan", tmp_path / "runs", only="normal", **kwargs)
    assert "\n" not in str(exc.value)
    assert not (tmp_path / "plan" / "slurm.sh").exists() and not marker.exists()
