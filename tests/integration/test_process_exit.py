"""How an `energybench` process ends: under torchrun by `os._exit` once its output is flushed (the
interpreter's teardown can abort in torch.distributed's C++ threads), alone by the usual exit.

Each case is a real process whose stdout and stderr are pipes (so block-buffered, the case a
lost flush would show), with an atexit handler that says whether the interpreter's teardown ran."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ENTRY = """
import atexit, sys
atexit.register(lambda: print("interpreter teardown ran", file=sys.stderr))
sys.argv = ["energybench", *sys.argv[1:]]
from energybench.cli import process_main
process_main()
"""

# A thread that keeps going in and out of torch's C++ code (as torch.distributed's communication
# threads do while they let go of their last work): each return from ATen takes the GIL back.
BUSY_THREAD = """
import threading, torch
torch.set_num_threads(1)
a = torch.randn(1000, 1000)
started = threading.Event()
def busy():
    started.set()
    while True:
        a @ a
threading.Thread(target=busy, daemon=True).start()
started.wait()
"""


def _energybench(*args: str, world_size: int | None, busy_thread: bool = False):
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    if world_size is not None:
        env |= {"WORLD_SIZE": str(world_size), "RANK": "0", "LOCAL_RANK": "0"}
    code = (BUSY_THREAD if busy_thread else "") + ENTRY
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("world_size", [None, 1, 2])
def test_a_finished_command_keeps_all_its_output_and_ends_without_teardown_only_under_torchrun(world_size):
    alone = _energybench("list", "recipes", world_size=None)
    run = _energybench("list", "recipes", world_size=world_size)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout == alone.stdout and "jeat" in run.stdout  # every line reached the pipe
    torchrun = world_size is not None and world_size > 1
    assert ("interpreter teardown ran" in run.stderr) is not torchrun


@pytest.mark.parametrize("world_size", [None, 2])
def test_a_user_error_keeps_its_line_and_exit_status_either_way(world_size):
    run = _energybench("train", "no-such-recipe", world_size=world_size)
    assert run.returncode == 2
    assert run.stderr.splitlines()[0].startswith("energybench: error:") and "no-such-recipe" in run.stderr
    assert ("interpreter teardown ran" in run.stderr) is (world_size is None)


def test_the_installed_entry_points_are_the_process_entry():
    """`energybench` (the console script) and `python -m energybench` both start `process_main`."""
    project = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["energybench"] == "energybench.cli:process_main"
    run = subprocess.run([sys.executable, "-m", "energybench", "list", "recipes"], capture_output=True,
                         text=True, timeout=300, env={**os.environ, "WORLD_SIZE": "2"})
    assert run.returncode == 0 and "jeat" in run.stdout, run.stderr[-2000:]


def test_under_torchrun_a_thread_still_in_torch_code_at_the_end_does_not_abort_a_finished_command():
    """The hazard itself, then its absence: through the interpreter's teardown the process dies of
    SIGABRT ("terminate called without an active exception", the abort a clean-clone CI run saw in
    one rank of a two-node job); ended by `process_main` under torchrun it exits 0 with all its output."""
    teardown = _energybench("list", "recipes", world_size=None, busy_thread=True)
    assert teardown.returncode == -signal.SIGABRT, (teardown.returncode, teardown.stderr[-2000:])
    assert "terminate called without an active exception" in teardown.stderr
    ended = _energybench("list", "recipes", world_size=2, busy_thread=True)
    assert ended.returncode == 0, ended.stderr[-2000:]
    assert ended.stdout == _energybench("list", "recipes", world_size=None).stdout and "jeat" in ended.stdout
