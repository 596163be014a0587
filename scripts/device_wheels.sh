#!/usr/bin/env bash
# Wheels of what symbench needs beyond a GPU machine's own Python (which has torch, lightning, torchmetrics, numpy,
# scipy, pandas, matplotlib, h5py, pyyaml, tqdm, but not escnn and its compiled dependencies), downloaded here for
# that machine's Python, into .device/wheels/ (git-ignored), to be carried with the command.
#
#   scripts/device_wheels.sh [PYTHON_VERSION=3.12]
#   # on the GPU machine, from the repository root (carry .device):
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .device/wheels/*.whl
#   export PYTHONPATH=/tmp/site:$PWD/src:$PWD && python3 benchmarks/gpu_check.py
#
# escnn's compiled dependencies: lie_learn has manylinux wheels for CPython 3.12 (downloaded as binaries). py3nj
# publishes sources only, built with numpy.distutils (f2py, gfortran), which Python 3.12 and NumPy 2 no longer have,
# so it is not carried: escnn imports without it and computes the SO(3) Clebsch-Gordan coefficients numerically
# instead (a warning; slower, cached on disk), which only the 3D octahedral models touch. The versions are those of
# this environment.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${1:-3.12}"
OUT=.device/wheels
PIP="${PIP:-python -m pip}"
mkdir -p "$OUT"
TAGS=(--python-version "$PY" --implementation cp --only-binary=:all:
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
      --platform manylinux1_x86_64 --platform manylinux_2_5_x86_64)
version() { $PIP show "$1" 2>/dev/null | awk '/^Version:/ {print $2}'; }
for pkg in escnn lie_learn pymanopt autograd jsonargparse docstring_parser typeshed_client; do
    v=$(version "$pkg")
    if [ -z "$v" ]; then echo "device_wheels: $pkg is not installed here; run make setup first" >&2; exit 2; fi
    $PIP download -q --no-deps "${TAGS[@]}" -d "$OUT" "$pkg==$v"
done
echo "device_wheels: $(ls "$OUT" | wc -l) wheels in $OUT ($(du -sh "$OUT" | cut -f1))"
