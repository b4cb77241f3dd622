"""Helpers shared by the benchmarks: timing, isolated peak memory, and writing reports."""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
REPORTS = REPO / "reports" / "benchmarks"
SHARED_DATA = Path(os.environ.get("ENERGYBENCH_SHARED_DATA", REPO.parent / "shared" / "data"))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, repeats: int, warmup: int = 1) -> list[float]:
    """Wall seconds of `fn()` over `repeats` runs after `warmup` runs."""
    for _ in range(warmup):
        fn()
    sync(device)
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        out.append(time.perf_counter() - start)
    return out


def peak_memory_mb(device: torch.device) -> float:
    """Peak CUDA memory allocated, or this process's peak resident set size on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_isolated(module: str, *args: str) -> dict:
    """Run `python -m benchmarks.<module> --worker ARGS` in a fresh process; its last stdout
    line is a JSON dict. A fresh process gives each measurement its own peak memory."""
    cmd = [sys.executable, "-m", f"benchmarks.{module}", "--worker", *args]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False,
                         env={**os.environ, "ENERGYBENCH_PROGRESS": "0"})
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def machine() -> dict:
    info = {"python": platform.python_version(), "torch": str(torch.__version__),
            "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def median(values: list[float]) -> float:
    return statistics.median(values)


def write_report(name: str, result: dict, markdown: str) -> None:
    """reports/benchmarks/<name>.json (raw) and <name>.md (table), plus the command."""
    REPORTS.mkdir(parents=True, exist_ok=True)
    result = {"benchmark": name, "command": f"python -m benchmarks.{name}", "machine": machine(),
              "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **result}
    (REPORTS / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    (REPORTS / f"{name}.md").write_text(
        f"# {name}\n\nCommand: `{result['command']}` ({result['created']}, "
        f"{result['machine']})\n\n{markdown}\n")
    print(markdown)
