#!/usr/bin/env bash
# Build the documentation site into docs/_build/html (offline; warnings are errors).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null
if ! .venv/bin/python -c "import sphinx, myst_parser, furo, sphinx_click" 2>/dev/null; then
  .venv/bin/pip install --quiet --disable-pip-version-check -e ".[docs]" 2>&1 | grep -v "^WARNING: Location" || true
fi
.venv/bin/python -m sphinx -W -n --keep-going -q -b html docs docs/_build/html
echo "docs: $(pwd)/docs/_build/html/index.html"
