#!/usr/bin/env bash
# Set up and run the test suite (CPU only; uses ../shared/data).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m pytest -q "$@"
