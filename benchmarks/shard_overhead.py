"""What sharding an evaluation over torchrun's ranks costs beyond the work itself: `eval` of
`pgd20` (and `clean`) on the same images, once as one process and once as two processes under
torchrun (gloo), each process with one thread, on this 2-core machine. Ideal: two processes take
half the one-process time (1.00x of the per-process work); the excess is the launch, rendezvous,
shard files and merge. Goal: at most 5%.

    python -m benchmarks.shard_overhead [--images 1024] [--repeats 2]

Each side is timed as the whole command, so both pay Python start-up and model loading once; the
ideal two-process time is taken as (one-process time - fixed start-up) / 2 + fixed start-up, with
the fixed start-up measured as `eval` on 16 images.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

from benchmarks._common import REPO, SHARED_DATA, write_report

ENV = {**os.environ, "ENERGYBENCH_PROGRESS": "0", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def timed_eval(images: int, nproc: int, out: str) -> float:
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc)]
                if nproc > 1 else [sys.executable])
    cmd = [*launcher, "-m", "energybench", "eval", "--model", str(REPO / "checkpoints" / "pgd-at-smoke.pt"),
           "--data", str(SHARED_DATA / "cifar10-jpeg75.tar.gz"), "--images", str(images), "--batch-size", "64",
           "--device", "cpu", "--metric", "clean", "--metric", "pgd20", "--out", out, "--force"]
    start = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, env=ENV, check=True, capture_output=True)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        timed_eval(16, 1, f"{tmp}/warm")  # the decoded-data cache, as both sides will find it
        fixed1 = statistics.median(timed_eval(16, 1, f"{tmp}/f1") for _ in range(args.repeats))
        fixed2 = statistics.median(timed_eval(16, 2, f"{tmp}/f2") for _ in range(args.repeats))
        one = statistics.median(timed_eval(args.images, 1, f"{tmp}/one") for _ in range(args.repeats))
        two = statistics.median(timed_eval(args.images, 2, f"{tmp}/two") for _ in range(args.repeats))
    work = one - fixed1  # the evaluation itself, in one process
    ideal = work / 2 + fixed2
    ratio = two / ideal
    markdown = "\n".join([
        "| images | one process (s) | two processes (s) | start-up one / two (s) | ideal two (s) | ratio |",
        "|---:|---:|---:|---:|---:|---:|",
        f"| {args.images} | {one:.1f} | {two:.1f} | {fixed1:.1f} / {fixed2:.1f} | {ideal:.1f} | {ratio:.3f} |",
        "", "`eval --metric clean --metric pgd20` of the PGD-AT smoke checkpoint on the JPEG copy's test "
        "images, one thread per process. Ideal two-process time: half the one-process evaluation work "
        "plus the two-process start-up (launcher, rendezvous, model loading); ratio = measured / ideal "
        "(goal <= 1.05)."])
    write_report("shard_overhead", {"images": args.images, "one_process_s": one, "two_processes_s": two,
                                    "startup_one_s": fixed1, "startup_two_s": fixed2, "ideal_two_s": ideal,
                                    "ratio": ratio}, markdown)


if __name__ == "__main__":
    main()
