"""SSIM nearest-neighbour search over the full CIFAR-10 training split (50,000 images):
energybench.metrics.ssim.nearest_by_ssim against a per-pair scikit-image loop (timed on a sample of pairs
and extrapolated), with the search's peak memory. Target: >= 100x, peak under 4 GB.

    python -m benchmarks.ssim_search [--queries 20] [--pairs 2000]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from benchmarks._common import SHARED_DATA, peak_memory_mb, run_isolated, write_report


def worker(queries: int, pairs: int) -> dict:
    from energybench.data import load_split
    from energybench.metrics.ssim import nearest_by_ssim

    train = load_split(SHARED_DATA / "cifar10-jpeg75.tar.gz", "train")
    q = torch.rand(queries, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    if pairs == 0:
        start = time.perf_counter()
        nearest_by_ssim(q, train.images, k=10, show_progress=False)
        seconds = time.perf_counter() - start
        return {"seconds": seconds, "pairs": queries * len(train), "peak_mb": peak_memory_mb(torch.device("cpu"))}
    from skimage.metrics import structural_similarity

    a = q[0].permute(1, 2, 0).double().numpy()
    start = time.perf_counter()
    for i in range(pairs):
        b = train.images[i].permute(1, 2, 0).double().numpy() / 255
        structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                              data_range=1.0, channel_axis=2)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "pairs": pairs, "peak_mb": peak_memory_mb(torch.device("cpu"))}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--worker", nargs="*")
    args = parser.parse_args()
    if args.worker is not None:
        print(json.dumps(worker(int(args.worker[0]), int(args.worker[1]))))
        return
    ours = run_isolated("ssim_search", str(args.queries), "0")
    ref = run_isolated("ssim_search", str(args.queries), str(args.pairs))
    ours_rate = ours["pairs"] / ours["seconds"]
    ref_rate = ref["pairs"] / ref["seconds"]
    lines = ["| method | pairs | seconds | pairs/s | peak MB |", "|---|---:|---:|---:|---:|",
             f"| energybench nearest_by_ssim ({args.queries} queries x 50,000) | {ours['pairs']} | "
             f"{ours['seconds']:.1f} | {ours_rate:,.0f} | {ours['peak_mb']:.0f} |",
             f"| scikit-image per-pair loop (sample) | {ref['pairs']} | {ref['seconds']:.1f} | "
             f"{ref_rate:,.0f} | {ref['peak_mb']:.0f} |",
             f"\nSpeed-up: **{ours_rate / ref_rate:.0f}x** (target >= 100x); the loop's full-split time "
             f"would be {ours['pairs'] / ref_rate / 3600:.1f} h. Peak memory is the whole process "
             f"(the 50,000-image split itself is 150 MB as uint8). CPU, float32."]
    write_report("ssim_search", {"energybench": ours, "skimage": ref, "speedup": ours_rate / ref_rate},
                 "\n".join(lines))


if __name__ == "__main__":
    main()
