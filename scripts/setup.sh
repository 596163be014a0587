#!/usr/bin/env bash
# Creates .venv with torch 2.13.0 (local CPU build) first, then symbench with every extra (test, rbc, smoke, turb3d)
# at the versions pinned by constraints.txt (CONSTRAINTS= resolves from pyproject.toml's ranges alone, as
# `make constraints` does). Idempotent: a stamp keyed on pyproject.toml, this script and the constraints makes a second
# run take about a second.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}
STAMP="$VENV/.symbench-setup"
CONSTRAINTS=${CONSTRAINTS-constraints.txt}
KEY=$(cat pyproject.toml scripts/setup.sh ${CONSTRAINTS:+"$CONSTRAINTS"} | sha256sum | cut -c1-16)

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$KEY" ]; then
    echo "setup: $VENV is up to date"
    exit 0
fi

# System packages: gfortran builds py3nj (escnn); FFTW + OpenMPI headers build Dedalus.
need_apt=()
command -v gfortran >/dev/null || need_apt+=(gfortran)
command -v mpicc >/dev/null || need_apt+=(libopenmpi-dev openmpi-bin)
[ -f /usr/include/fftw3-mpi.h ] || need_apt+=(libfftw3-dev libfftw3-mpi-dev)
if [ ${#need_apt[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "setup: apt-get install ${need_apt[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --no-cache-dir --disable-pip-version-check -q)
# torch first, pinned: an unpinned torch would pull a multi-GB CUDA build.
"$VENV/bin/python" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '2.13.0')" 2>/dev/null \
    || "${PIP[@]}" install torch==2.13.0
# Dedalus is an sdist that must be compiled with the MPI wrapper.
CC=mpicc "${PIP[@]}" install ${CONSTRAINTS:+-c "$CONSTRAINTS"} "numpy<2" "pandas<3" -e ".[test,rbc,smoke,turb3d]"
"$VENV/bin/python" -c "import symbench, datamodules, escnn, dedalus.public, lightning" >/dev/null
echo "$KEY" > "$STAMP"
echo "setup: done ($("$VENV/bin/python" -c 'import torch; print("torch", torch.__version__)'))"
