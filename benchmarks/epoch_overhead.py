"""Cost of one `normal` training epoch through the shared loop, relative to the bare
forward + backward + optimizer step of the same model for the same number of steps (one float
batch reused: no data loading, augmentation, logging or checkpointing). Target: at most 1.15.

    python -m benchmarks.epoch_overhead [--device auto] [--images 10000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import replace

import torch
import torch.nn.functional as F

from benchmarks._common import SHARED_DATA, median, peak_memory_mb, run_isolated, timed, write_report


def worker(mode: str, images: int, device_name: str, repeats: int) -> dict:
    from energybench.core.runtime import resolve_device
    from energybench.models import create_model
    from energybench.training.config import apply_overrides
    from energybench.training.recipes import preset_config
    from energybench.training.trainer import Trainer

    device = resolve_device(device_name)
    cfg = preset_config("normal", "smoke")
    cfg = replace(cfg, data=replace(cfg.data, source=str(SHARED_DATA / "cifar10-jpeg75.tar.gz")))
    cfg = apply_overrides(cfg, [f"data.train_subset={images}", "optim.epochs=1000",
                                "data.eval_subset=0" if mode == "loop-no-eval" else "data.eval_subset=1000"])
    if mode == "bare":
        model = create_model(cfg.model.name, num_classes=10, **cfg.model.kwargs).to(device).train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        bs = cfg.optim.batch_size
        steps = images // bs
        x = torch.rand(bs, 3, 32, 32, device=device)  # one batch reused: no data movement at all
        y = torch.randint(0, 10, (bs,), device=device)

        def epoch():
            for _ in range(steps):
                loss = F.cross_entropy(model(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    else:
        with tempfile.TemporaryDirectory() as tmp:
            trainer = Trainer(cfg, tmp, device)

            def epoch():
                trainer.run(stop_after_steps=trainer.global_step + trainer.steps_per_epoch)

            times = timed(epoch, device, repeats)
        return {"seconds": times, "peak_mb": peak_memory_mb(device), "images": images}
    times = timed(epoch, device, repeats)
    return {"seconds": times, "peak_mb": peak_memory_mb(device), "images": images}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="auto")
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--worker", nargs="*")
    args = parser.parse_args()
    if args.worker is not None:
        print(json.dumps(worker(args.worker[0], args.images, args.device, args.repeats)))
        return
    common = ["--device", args.device, "--images", str(args.images), "--repeats", str(args.repeats)]
    results = {mode: run_isolated("epoch_overhead", mode, *common)
               for mode in ("bare", "loop", "loop-no-eval")}
    bare = median(results["bare"]["seconds"])
    lines = ["| what | seconds / epoch | ratio to bare | peak MB |", "|---|---:|---:|---:|"]
    for mode, label in [("bare", "bare forward+backward+step"),
                        ("loop", "energybench loop (augment, log, checkpoint, eval 1000 imgs)"),
                        ("loop-no-eval", "energybench loop without the per-epoch eval")]:
        sec = median(results[mode]["seconds"])
        lines.append(f"| {label} | {sec:.2f} | {sec / bare:.3f} | {results[mode]['peak_mb']:.0f} |")
    lines.append(f"\nModel: smoke preset (tiny-cnn width 48), {args.images} images per epoch, batch "
                 f"128, median of {args.repeats} epochs after a warm-up epoch. Target ratio <= 1.15.")
    write_report("epoch_overhead", {"device": args.device, "results": results,
                                    "ratio": median(results["loop"]["seconds"]) / bare,
                                    "ratio_no_eval": median(results["loop-no-eval"]["seconds"]) / bare},
                 "\n".join(lines))


if __name__ == "__main__":
    main()
