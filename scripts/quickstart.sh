#!/usr/bin/env bash
# The main job: set up, train a small classifier on CIFAR-10 (the local JPEG copy if present),
# evaluate clean and PGD-20 accuracy, and print and save the results table.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ -n "${ENERGYBENCH_QUICKSTART_DATA:-}" ]; then
  DATA=$ENERGYBENCH_QUICKSTART_DATA   # given: used as given (a wrong path is an error, not a fallback)
else
  DATA=../shared/data/cifar10-jpeg75.tar.gz
  [ -e "$DATA" ] || DATA=cifar10   # elsewhere: the data home (see README, "Data")
fi
RUN=${ENERGYBENCH_QUICKSTART_RUN:-runs/quickstart}
EB=.venv/bin/energybench
if [ -f "$RUN/last.pt" ]; then RESUME=--resume; else RESUME=; fi
$EB train normal --preset smoke --data "$DATA" --out "$RUN" $RESUME
$EB eval --ckpt "$RUN/last.pt" --suite smoke --n 2000
EXACT=../shared/data/cifar10-test-exact-1017.npz
if [ -e "$EXACT" ]; then
  $EB eval --ckpt "$RUN/last.pt" --suite smoke --data "$EXACT" --out "$RUN/eval-exact-pixels"
fi
echo "run folder: $RUN (checkpoint last.pt, log.jsonl, eval records and summary.md)"
