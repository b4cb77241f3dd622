"""The generated slurm.sh runs exactly the plan's commands: it reads each job's arguments from
plan.json at run time (nothing given by the user is pasted into the script but the quoted plan
path), so values with shell syntax reach the command verbatim, and values with control characters
(a newline would end a line of the script or of a cluster's log) are refused where they are given."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.synthetic


def _stub(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text(f"#!/bin/bash\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def _npz(path: Path) -> Path:
    rng = np.random.default_rng(0)
    np.savez(path, images=rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8), labels=np.arange(4))
    return path


def test_shell_syntax_in_values_reaches_the_command_verbatim(tmp_path, run_cli):
    weird = _npz(tmp_path / "data $(touch PWNED) `touch PWNED` ' \" ; & | x.npz")  # run from tmp_path
    plan_dir = tmp_path / "plan $(touch PWNED)"
    code, out, err = run_cli("reproduce", "--plan", "--preset", "ci", "--only", "normal", "--data", str(weird),
                             "--out", str(plan_dir), "--runs", str(tmp_path / "runs"),
                             "--inception-weights", "w'$(touch PWNED).pth", "--device", "cpu")
    assert code == 0, err
    script = (plan_dir / "slurm.sh").read_text()
    assert "PWNED" not in script.replace(str(plan_dir), "")  # only the (quoted) plan path is in it
    assert subprocess.run(["bash", "-n", "-c", script]).returncode == 0
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _stub(bin_dir, "torchrun", 'printf "%s\\0" "$@" > "$ARGS_OUT"')
    _stub(bin_dir, "python", f'exec {sys.executable} "$@"')
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_ARRAY_TASK_ID": "0",
           "ARGS_OUT": str(tmp_path / "args")}
    run = subprocess.run(["bash", str(plan_dir / "slurm.sh")], env=env, capture_output=True, text=True,
                         cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    args = [a.decode() for a in (tmp_path / "args").read_bytes().split(b"\0")[:-1]]
    job = json.loads((plan_dir / "plan.json").read_text())["jobs"][0]
    assert args == ["--standalone", "--nproc_per_node", "1", "-m", "energybench", *job["command"][1:]]
    assert str(weird) in job["command"] and not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("flag", ["--data", "--inception-weights", "--device"])
def test_a_newline_in_a_value_is_refused_before_anything_is_written(flag, tmp_path, run_cli):
    data = _npz(tmp_path / "d.npz")
    values = {"--data": str(data), "--inception-weights": "w.pth", "--device": "cpu"}
    values[flag] = f"x\ntouch {tmp_path / 'PWNED'}\n#"
    args = [a for pair in values.items() for a in pair]
    code, out, err = run_cli("reproduce", "--plan", "--preset", "ci", "--only", "normal", *args,
                             "--out", str(tmp_path / "plan"), "--runs", str(tmp_path / "runs"))
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    expected = "data not found" if flag == "--data" else f"{flag} 'x\\ntouch"  # a path that is no file
    assert expected in err and ("holds a control character" in err or flag == "--data"), err
    assert not (tmp_path / "plan" / "slurm.sh").exists() and not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("task", ["999", "-1", "x", ""])
def test_a_task_id_outside_the_plan_is_one_line(task, tmp_path, run_cli):
    code, out, err = run_cli("reproduce", "--plan", "--preset", "ci", "--only", "normal", "--data",
                             str(_npz(tmp_path / "d.npz")), "--out", str(tmp_path / "plan"),
                             "--runs", str(tmp_path / "runs"), "--device", "cpu")
    assert code == 0, err
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _stub(bin_dir, "torchrun", f'touch {tmp_path / "RAN"}')
    _stub(bin_dir, "python", f'exec {sys.executable} "$@"')
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_ARRAY_TASK_ID": task}
    run = subprocess.run(["bash", str(tmp_path / "plan" / "slurm.sh")], env=env, capture_output=True, text=True)
    lines = run.stderr.strip().splitlines()
    assert run.returncode != 0 and len(lines) == 1 and "is not a task of this plan" in lines[0], run.stderr
    assert "Traceback" not in run.stderr and not (tmp_path / "RAN").exists()
