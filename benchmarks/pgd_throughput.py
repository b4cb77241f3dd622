"""PGD-20 throughput: energybench.attacks.pgd.pgd vs torchattacks (independent implementations of the
same algorithms: torchattacks.PGD for L-inf, eps 8/255, step 2/255, uniform random start, and
torchattacks.PGDL2 for L2, eps 0.5, step 0.125, random start in the ball), 20 steps, on the same
model, batch and device, each in its own process. Ratio > 1 means energybench is faster.

    python -m benchmarks.pgd_throughput [--device auto] [--repeats 3] [--rounds 4]

torchattacks is installed with --no-deps into .cache/bench-deps (its wheel also carries a stale
`robustbench` package, which stays out of the environment).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import torch

from benchmarks._common import REPO, median, peak_memory_mb, run_isolated, timed, write_report

DEPS = REPO / ".cache" / "bench-deps"
CASES = [("tiny-cnn", {"width": 48}, 256), ("preact-resnet18", {}, 32)]
NORMS = {"Linf": (8 / 255, 2 / 255), "L2": (0.5, 0.125)}  # eps, step


def ensure_torchattacks() -> None:
    if not (DEPS / "torchattacks").exists():
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target",
                        str(DEPS), "torchattacks==3.5.1"], check=True)


def worker(impl: str, model_name: str, kwargs: dict, batch: int, device_name: str, repeats: int,
           norm: str = "Linf"):
    from energybench.attacks.pgd import PGDConfig, pgd
    from energybench.core.runtime import resolve_device
    from energybench.models import create_model

    device = resolve_device(device_name)
    torch.manual_seed(0)
    model = create_model(model_name, **kwargs).to(device).eval()
    x = torch.rand(batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    eps, step = NORMS[norm]
    if impl == "energybench":
        cfg = PGDConfig(eps=eps, step_size=step, steps=20, norm=norm)
        gen = torch.Generator(device=device).manual_seed(0)
        fn = lambda: pgd(model, x, y, cfg, gen)  # noqa: E731
    else:
        sys.path.insert(0, str(DEPS))
        import torchattacks

        attack_cls = torchattacks.PGD if norm == "Linf" else torchattacks.PGDL2
        attack = attack_cls(model, eps=eps, alpha=step, steps=20, random_start=True)
        fn = lambda: attack(x, y)  # noqa: E731
    times = timed(fn, device, repeats)
    return {"seconds": times, "images_per_s": batch / median(times), "peak_mb": peak_memory_mb(device)}


def interleaved(common: list[str], rounds: int, batch: int) -> tuple[dict, dict]:
    """Both implementations' workers run `rounds` times in alternating order (ABBA...), so a
    slow spell of the machine falls on both; each side's runs are pooled and their median taken."""
    runs = {"energybench": [], "torchattacks": []}
    for r in range(rounds):
        order = ("energybench", "torchattacks") if r % 2 == 0 else ("torchattacks", "energybench")
        for impl in order:
            runs[impl].append(run_isolated("pgd_throughput", impl, *common))
    pooled = {}
    for impl, results in runs.items():
        seconds = [t for res in results for t in res["seconds"]]
        pooled[impl] = {"seconds": seconds, "images_per_s": batch / median(seconds),
                        "peak_mb": max(res["peak_mb"] for res in results)}
    return pooled["energybench"], pooled["torchattacks"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=4, help="worker processes per implementation, alternating")
    parser.add_argument("--worker", nargs="*")
    args = parser.parse_args()
    if args.worker is not None:
        impl, model_name, kwargs, batch, norm = args.worker
        print(json.dumps(worker(impl, model_name, json.loads(kwargs), int(batch), args.device,
                                args.repeats, norm)))
        return
    ensure_torchattacks()
    rows, lines = [], ["| norm | model | batch | energybench img/s | torchattacks img/s | ratio | "
                       "peak MB (eb / ta) |", "|---|---|---:|---:|---:|---:|---:|"]
    for norm in NORMS:
        for model_name, kwargs, batch in CASES:
            common = [model_name, json.dumps(kwargs), str(batch), norm, "--device", args.device,
                      "--repeats", str(args.repeats)]
            ours, theirs = interleaved(common, args.rounds, batch)
            ratio = ours["images_per_s"] / theirs["images_per_s"]
            rows.append({"norm": norm, "model": model_name, "kwargs": kwargs, "batch": batch,
                         "energybench": ours, "torchattacks": theirs, "ratio": ratio})
            lines.append(f"| {norm} | {model_name} | {batch} | {ours['images_per_s']:.1f} | "
                         f"{theirs['images_per_s']:.1f} | {ratio:.3f} | "
                         f"{ours['peak_mb']:.0f} / {theirs['peak_mb']:.0f} |")
    lines.append("\nratio = energybench images/s / torchattacks images/s (median of "
                 f"{args.rounds} x {args.repeats} runs: {args.rounds} worker processes per implementation, "
                 "run in alternating order, each timing its runs after a warm-up run; target >= 1.0). Peak memory is the "
                 "worker process's peak RSS on CPU (model, data and interpreter included) or peak "
                 "CUDA memory allocated.")
    write_report("pgd_throughput", {"device": args.device, "rows": rows}, "\n".join(lines))


if __name__ == "__main__":
    main()
