#!/usr/bin/env bash
# A folder of energybench's dependencies for a GPU machine that has its own Python and torch but no
# internet (a cluster node, a lent accelerator), made on a machine that reaches the package index:
#
#   bash scripts/offline_site.sh [--python 3.12] [--out .gpusite]
#   # copy the repository with OUT to the GPU machine, then there:
#   PYTHONPATH=$PWD/.gpusite:$PWD bash scripts/gpu_check.sh --device cuda
#
# It fetches wheels (binary only, no dependencies resolved: the list below is complete for an image
# that already has torch, numpy, scipy, pandas, matplotlib, pillow, click, tqdm, pyyaml, requests,
# pytest, hypothesis, scikit-image and timm) for the target Python on x86-64 Linux, at the versions this
# checkout's .venv holds (else the versions named below), and unpacks them into OUT, which then
# works as a site folder on PYTHONPATH without pip. Package test folders are left out to keep it
# small (about 13 MiB): with the data (22 MiB) and the repository without its reports it fits a
# 64 MiB transfer.
set -euo pipefail
cd "$(dirname "$0")/.."
target_python=3.12
out=.gpusite
while [ $# -gt 0 ]; do
  case "$1" in
    --python) target_python="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    *) echo "offline_site.sh: unknown option $1 (options: --python X.Y, --out DIR)" >&2; exit 2 ;;
  esac
done

# name==version; the .venv's version wins where it has the package
packages=(
  pyautoattack==0.2.0 torch-fidelity==0.4.0 torchattacks==3.5.1 tomli-w==1.2.0
  import-linter==2.17 grimp==3.20 jsonschema==4.26.0 jsonschema-specifications==2025.9.1
  referencing==0.37.0 rpds-py==2026.9.1 robustbench==1.1.1 geotorch==0.4.0 gdown==5.1.0
  beautifulsoup4==4.15.0 soupsieve==4.1.4
)
python=python3
if [ -x .venv/bin/python ]; then python=.venv/bin/python; fi
pinned=()
for spec in "${packages[@]}"; do
  name="${spec%%==*}"
  have=$("$python" -m pip show "$name" 2>/dev/null | sed -n 's/^Version: //p' || true)
  pinned+=("$name==${have:-${spec#*==}}")
done

wheels=$(mktemp -d)
trap 'rm -rf "$wheels"' EXIT
platforms=()
for p in manylinux_2_39 manylinux_2_35 manylinux_2_34 manylinux_2_31 manylinux_2_28 manylinux_2_27 \
         manylinux_2_24 manylinux_2_17 manylinux2014 manylinux1; do
  platforms+=(--platform "${p}_x86_64")
done
for spec in "${pinned[@]}"; do
  "$python" -m pip download -q --no-deps --only-binary=:all: --python-version "$target_python" \
    --implementation cp "${platforms[@]}" -d "$wheels" "$spec" \
    || { echo "offline_site.sh: no wheel of $spec for Python $target_python on x86-64 Linux" >&2; exit 1; }
done

rm -rf "$out" && mkdir -p "$out"
# torchattacks first: its wheel carries a stale copy of robustbench, which the real one then replaces
for w in "$wheels"/torchattacks-*.whl; do "$python" -m zipfile -e "$w" "$out"; done
for w in "$wheels"/*.whl; do
  case "$(basename "$w")" in torchattacks-*) ;; *) "$python" -m zipfile -e "$w" "$out" ;; esac
done
# test folders and pyautoattack's example model (43 MB) are not needed by energybench
find "$out" -maxdepth 2 -type d \( -name tests -o -name __pycache__ \) -prune -exec rm -rf {} +
rm -rf "$out/pyautoattack/examples"
echo "$out: $(ls "$wheels" | wc -l) wheels for Python $target_python, $(du -sh "$out" | cut -f1)"
