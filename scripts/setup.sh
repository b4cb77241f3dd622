#!/usr/bin/env bash
# Create .venv and install energybench with its test dependencies (torch from local files here).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
pip_install() { .venv/bin/pip install --quiet --disable-pip-version-check "$@" 2>&1 | grep -v "^WARNING: Location" || true; }
if ! .venv/bin/python -c "import torch, torchvision" 2>/dev/null; then
  echo "installing torch==2.14.1 torchvision==0.29.1 (a few minutes)..."
  pip_install torch==2.14.1 torchvision==0.29.1
fi
# the package and its test extras only when missing or when pyproject.toml changed since the last
# install (an editable install picks up code changes by itself): a second run takes seconds
STAMP=.venv/.energybench-installed
WANT=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ] || ! .venv/bin/python -c "import energybench, pyautoattack, torch_fidelity, skimage" 2>/dev/null; then
  pip_install -e ".[test]"
  echo "$WANT" > "$STAMP"
fi
.venv/bin/python -c "import torch, torchvision, pyautoattack, torch_fidelity, skimage, tomli_w, yaml, energybench, energybench.handles.zoo as zoo; zoo.robustbench(); print('energybench', energybench.__version__, '| torch', torch.__version__, '| robustbench usable')"
