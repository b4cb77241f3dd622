"""The generated SLURM scripts run exactly the plan's commands along its `needs`: task.sbatch reads
each job's arguments from plan.json at run time (nothing given by the user is pasted into either
script but the quoted plan folder and allow-listed --slurm values), so values with shell syntax
reach the command verbatim, and values with control characters (a newline would end a line of a
script or of a cluster's log) are refused where they are given. slurm.sh is run against a stub
sbatch that checks every call's syntax and the order of the dependencies."""

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


@pytest.fixture
def stubs(tmp_path, monkeypatch):
    """A bin folder with a python that is this one; plans made in the test put it first on PATH
    (as they would the environment they were made from)."""
    from energybench.workflows import jobs

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _stub(bin_dir, "python", f'exec {sys.executable} "$@"')
    monkeypatch.setattr(jobs, "environment_bin", lambda: bin_dir)
    return bin_dir


def test_shell_syntax_in_values_reaches_the_command_verbatim(tmp_path, run_cli, stubs):
    weird = _npz(tmp_path / "data $(touch PWNED) `touch PWNED` ' \" ; & | x.npz")  # run from tmp_path
    plan_dir = tmp_path / "plan $(touch PWNED)"
    code, out, err = run_cli("reproduce", "--plan", "--preset", "ci", "--only", "normal", "--data", str(weird),
                             "--out", str(plan_dir), "--runs", str(tmp_path / "runs"),
                             "--inception-weights", "w'$(touch PWNED).pth", "--device", "cpu")
    assert code == 0, err
    for name in ("slurm.sh", "task.sbatch"):
        script = (plan_dir / name).read_text()
        assert "PWNED" not in script.replace(str(plan_dir), "")  # only the (quoted) plan path is in it
        assert subprocess.run(["bash", "-n", "-c", script]).returncode == 0
    _stub(stubs, "torchrun", 'printf "%s\\0" "$@" > "$ARGS_OUT"')
    env = {**os.environ, "SLURM_ARRAY_TASK_ID": "0", "ARGS_OUT": str(tmp_path / "args")}
    run = subprocess.run(["bash", str(plan_dir / "task.sbatch")], env=env, capture_output=True, text=True,
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
    assert f"{flag} 'x\\ntouch" in err and "holds a control character" in err, err
    assert not (tmp_path / "plan" / "slurm.sh").exists() and not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("task", ["999", "-1", "x", ""])
def test_a_task_id_outside_the_plan_is_one_line(task, tmp_path, run_cli, stubs):
    code, out, err = run_cli("reproduce", "--plan", "--preset", "ci", "--only", "normal", "--data",
                             str(_npz(tmp_path / "d.npz")), "--out", str(tmp_path / "plan"),
                             "--runs", str(tmp_path / "runs"), "--device", "cpu")
    assert code == 0, err
    _stub(stubs, "torchrun", f'touch {tmp_path / "RAN"}')
    env = {**os.environ, "SLURM_ARRAY_TASK_ID": task}
    run = subprocess.run(["bash", str(tmp_path / "plan" / "task.sbatch")], env=env, capture_output=True, text=True)
    lines = run.stderr.strip().splitlines()
    assert run.returncode != 0 and len(lines) == 1 and "is not a job of this plan" in lines[0], run.stderr
    assert "Traceback" not in run.stderr and not (tmp_path / "RAN").exists()


# A stub sbatch: checks each call against the options slurm.sh may use and the array and dependency
# syntax, records it (one JSON line), and prints a new job id as --parsable does.
SBATCH_STUB = """import json, os, re, sys
args = sys.argv[1:]
script = args[-1]
known = re.compile(r"--(parsable|kill-on-invalid-dep=yes|output=.+|error=.+|partition=[A-Za-z0-9_.,-]+|"
                   r"account=[A-Za-z0-9_.-]+|job-name=eb-(train|eval|figures|tables)|array=[0-9,-]+(%[0-9]+)?|"
                   r"dependency=(afterok|afterany):[0-9_:]+|time=[0-9:-]+|mem=[0-9]+[KMGT]?|cpus-per-task=[0-9]+|"
                   r"gpus-per-node=[0-9]+)")
bad = [a for a in args[:-1] if not known.fullmatch(a)]
if bad or not os.path.isfile(script):
    sys.exit(f"sbatch: error: {bad or script}")
log = os.environ["SBATCH_LOG"]
calls = sum(1 for _ in open(log)) if os.path.exists(log) else 0
with open(log, "a") as fh:
    fh.write(json.dumps(args) + chr(10))
print(1000 + calls)"""


def test_slurm_sh_submits_the_plan_along_its_needs(tmp_path, run_cli, stubs):
    """Trainings first (throttled, with their resources); each run's evaluations after its own
    training task succeeded; the tables after every task; a task of each array runs its job."""
    data = _npz(tmp_path / "d.npz")
    code, out, err = run_cli("reproduce", "--plan", "--preset", "ci", "--only", "normal,jeat", "--data", str(data),
                             "--out", str(tmp_path / "plan"), "--runs", str(tmp_path / "runs"), "--device", "cpu",
                             "--slurm", "train.time=3-00:00:00", "--slurm", "eval.gpus=2",
                             "--slurm", "partition=gpu", "--slurm", "throttle=4")
    assert code == 0, err
    (stubs / "sbatch.py").write_text(SBATCH_STUB)
    _stub(stubs, "sbatch", f'exec {sys.executable} {stubs / "sbatch.py"} "$@"')
    env = {**os.environ, "PATH": f"{stubs}:{os.environ['PATH']}", "SBATCH_LOG": str(tmp_path / "calls")}
    run = subprocess.run(["bash", str(tmp_path / "plan" / "slurm.sh")], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    calls = [json.loads(line) for line in (tmp_path / "calls").read_text().splitlines()]
    jobs = json.loads((tmp_path / "plan" / "plan.json").read_text())["jobs"]
    ids = {call[-1]: None for call in calls}
    assert set(ids) == {str(tmp_path / "plan" / "task.sbatch")}

    def value(call, flag):
        found = [a.split("=", 1)[1] for a in call if a.startswith(f"--{flag}=")]
        return found[0] if found else None

    def indices(spec):
        out = []
        for part in spec.split("%")[0].split(","):
            lo, _, hi = part.partition("-")
            out += list(range(int(lo), int(hi or lo) + 1))
        return out

    train, *middle, tables = calls
    job_id = {i: 1000 + i for i in range(len(calls))}
    assert value(train, "job-name") == "eb-train" and value(train, "dependency") is None
    assert value(train, "time") == "3-00:00:00" and value(train, "array").endswith("%4")
    assert all(value(c, "partition") == "gpu" and value(c, "mem") and value(c, "cpus-per-task")
               and value(c, "output") and value(c, "error") for c in calls)
    trains = indices(value(train, "array"))
    assert [jobs[i]["kind"] for i in trains] == ["train"] * len(trains) and len(trains) == \
        sum(j["kind"] == "train" for j in jobs)
    covered = set(trains)
    for call in middle:  # each: the jobs that need one training, after that training's own task
        dependency = value(call, "dependency")
        kind, _, task = dependency.partition(":")
        assert kind == "afterok" and task.startswith(f"{job_id[0]}_"), dependency
        needed = jobs[int(task.split("_")[1])]["id"]
        mine = indices(value(call, "array"))
        assert all(jobs[i]["needs"] == [needed] for i in mine) and value(call, "gpus-per-node") == "2"
        covered |= set(mine)
    assert value(tables, "array") == str(len(jobs) - 1) and jobs[-1]["kind"] == "tables"
    assert value(tables, "dependency") == "afterany:" + ":".join(str(job_id[i]) for i in range(len(calls) - 1))
    assert value(tables, "gpus-per-node") is None
    assert covered | {len(jobs) - 1} == set(range(len(jobs)))  # every job is submitted exactly once
    assert sum(len(indices(value(c, "array"))) for c in calls) == len(jobs)
    # a task of an evaluation array runs that job's command (the stub torchrun records it)
    _stub(stubs, "torchrun", 'printf "%s\\0" "$@" > "$ARGS_OUT"')
    task = indices(value(middle[0], "array"))[0]
    env = {**os.environ, "SLURM_ARRAY_TASK_ID": str(task), "SLURM_GPUS_ON_NODE": "2", "ARGS_OUT": str(tmp_path / "a")}
    done = subprocess.run(["bash", str(tmp_path / "plan" / "task.sbatch")], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    args = [a.decode() for a in (tmp_path / "a").read_bytes().split(b"\0")[:-1]]
    assert args == ["--standalone", "--nproc_per_node", "2", "-m", "energybench", *jobs[task]["command"][1:]]


@pytest.mark.parametrize("setting, message", [
    ("train.time=1 day", r"--slurm train.time=1 day: not a SLURM time value"),
    ("gpu.time=1:00:00", r"--slurm gpu.time: no job kind 'gpu'"),
    ("eval.nodes=2", r"--slurm eval.nodes: unknown setting"),
    ("partition=gpu;rm", r"--slurm partition=gpu;rm: not a SLURM partition value"),
    ("throttle=0", r"--slurm throttle=0: not a SLURM throttle value"),
])
def test_slurm_settings_are_allow_listed(setting, message, tmp_path, run_cli):
    code, out, err = run_cli("reproduce", "--plan", "--preset", "ci", "--only", "normal", "--data",
                             str(_npz(tmp_path / "d.npz")), "--out", str(tmp_path / "plan"), "--slurm", setting)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert __import__("re").search(message, err), err
    assert not (tmp_path / "plan" / "slurm.sh").exists()


def test_a_plan_needs_no_data_on_the_planning_machine(tmp_path, run_cli):
    code, out, err = run_cli("reproduce", "--plan", "--preset", "ci", "--only", "normal", "--data",
                             "/cluster/data/cifar10-jpeg75.tar.gz", "--out", str(tmp_path / "plan"))
    assert code == 0 and "is not on this machine" in err, err
    jobs = json.loads((tmp_path / "plan" / "plan.json").read_text())["jobs"]
    assert "/cluster/data/cifar10-jpeg75.tar.gz" in jobs[0]["command"]
