"""Loading the full CIFAR-10 train split (50,000 images) from the JPEG tar: first decode vs the
cached load, each in a fresh process with its own data home. Target: cached load < 3 s.

    python -m benchmarks.data_load
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

from benchmarks._common import SHARED_DATA, peak_memory_mb, run_isolated, write_report


def worker() -> dict:
    import torch

    from energybench.data import load_split

    start = time.perf_counter()
    data = load_split(SHARED_DATA / "cifar10-jpeg75.tar.gz", "train")
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "images": len(data), "peak_mb": peak_memory_mb(torch.device("cpu"))}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", nargs="*")
    args = parser.parse_args()
    if args.worker is not None:
        print(json.dumps(worker()))
        return
    with tempfile.TemporaryDirectory() as home:
        os.environ["ENERGYBENCH_HOME"] = home
        first = run_isolated("data_load")
        cached = [run_isolated("data_load") for _ in range(3)]
    best = min(c["seconds"] for c in cached)
    lines = ["| load | seconds | peak MB |", "|---|---:|---:|",
             f"| first (decode 60,000 JPEGs + write cache) | {first['seconds']:.2f} | {first['peak_mb']:.0f} |"]
    lines += [f"| cached, run {i + 1} | {c['seconds']:.2f} | {c['peak_mb']:.0f} |" for i, c in enumerate(cached)]
    lines.append(f"\nCached load of the 50,000-image train split: best {best:.2f} s (target < 3 s), "
                 f"{first['seconds'] / best:.0f}x faster than the first decode. Timed inside the "
                 f"process (imports excluded).")
    write_report("data_load", {"first": first, "cached": cached}, "\n".join(lines))


if __name__ == "__main__":
    main()
