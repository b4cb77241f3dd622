"""Copy the smoke reproduction's checkpoints into checkpoints/ for evaluation on a fresh clone.

    python scripts/ship_checkpoints.py [--runs runs/reproduce-smoke] [--n 500] [--records-only]

Each shipped file is the run's last.pt (the checkpoint `reproduce --preset smoke` evaluated)
without what only resuming training needs (optimizer state, the SGLD replay buffer), with its
training data named relative to the repository root (../shared/data/...), re-digested and saved
with energybench's own writer; the run's log.jsonl goes beside it as <name>-smoke.log.jsonl. Then each is evaluated with `--suite smoke` on 500 test images of
the JPEG copy; the records go to checkpoints/records/<name>/, and one row per checkpoint is printed
for the table in checkpoints/README.md. `--records-only` keeps the shipped files and only
re-makes their records (after a change to the metrics), replacing checkpoints/records/<name>/.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from energybench.core.hashing import file_sha256  # noqa: E402
from energybench.evaluation.runner import evaluate  # noqa: E402
from energybench.handles.checkpoint import read_checkpoint, save_checkpoint  # noqa: E402

RUNS = ("normal", "pgd-at", "trades", "jem", "jeat", "eb-jdat", "jempp", "sadajem", "eb-jdat-sadajem")
DATA = "../shared/data/cifar10-jpeg75.tar.gz"  # relative to the repository root


def ship(run_dir: Path, dest: Path) -> None:
    ckpt = read_checkpoint(run_dir / "last.pt")
    slim = {k: v for k, v in ckpt.items() if k not in ("optimizer", "weights_sha256")}
    slim["recipe_state"] = {}
    slim["meta"] = {**ckpt["meta"], "data_spec": DATA,
                    "shipped_from": f"{run_dir.name}/last.pt (sha256 {file_sha256(run_dir / 'last.pt')[:16]})",
                    "shipped_without": ["optimizer", "recipe_state (SGLD replay buffer)"]}
    save_checkpoint(slim, dest)
    shutil.copyfile(run_dir / "log.jsonl", dest.with_name(f"{dest.stem}.log.jsonl"))  # for energy-dynamics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=REPO / "runs" / "reproduce-smoke")
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--records-only", action="store_true", help="keep the shipped files; re-make their records")
    args = parser.parse_args()
    out = REPO / "checkpoints"
    rows = []
    for name in RUNS:
        dest = out / f"{name}-smoke.pt"
        if not args.records_only:
            ship(args.runs / name, dest)
        shutil.rmtree(out / "records" / name, ignore_errors=True)
        records = evaluate(dest.relative_to(REPO), ["clean", "pgd20"], n=args.n,
                           out_dir=out / "records" / name, log=lambda m: None)
        by = {r["metric"]: r for r in records}
        ckpt = read_checkpoint(dest)
        rows.append(f"| `{dest.name}` | {name} | {ckpt['model']['name']} | {ckpt['progress']['epoch']} | "
                    f"{dest.stat().st_size / 1e6:.1f} MB | {100 * by['clean']['value']:.1f} | "
                    f"{100 * by['pgd20']['value']:.1f} |")
        print(rows[-1])


if __name__ == "__main__":
    main()
