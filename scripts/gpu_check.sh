#!/usr/bin/env bash
# The GPU check (scripts/gpu_check.py says what it measures). On a machine with a GPU:
#   bash scripts/gpu_check.sh                 # writes reports/gpu-check/
#   bash scripts/gpu_check.sh --tiny --device cpu --out /tmp/gpu-check   # the CPU dry run
# Uses .venv/bin/python when there is one, else python3 (a GPU machine's own torch).
set -euo pipefail
cd "$(dirname "$0")/.."
python=python3
if [ -x .venv/bin/python ]; then python=.venv/bin/python; fi
exec "$python" scripts/gpu_check.py "$@"
