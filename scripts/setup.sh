#!/usr/bin/env bash
# Create .venv (or $VENV) with everything the tutorials and tests need, on a machine with only Python.
# torch==2.13.0 goes in first: on a CPU-only machine that is a CPU build, and the requirements'
# torch range is then already met (a bare `torch` requirement would pull the CUDA packages).
# COLAB_PINNED=1 holds every package that Colab's GPU runtime ships at Colab's version
# (constraints/colab-gpu.txt), except torch and its CUDA stack (torch stays the CPU build) and the packaging
# tools (the CPU torch 2.13 needs setuptools >= 77, Colab ships 75.2).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
constraints=()
if [ -n "${COLAB_PINNED:-}" ]; then
  grep -Ev '^((torch|torchvision|torchaudio|triton|setuptools|pip|wheel)==|(nvidia|cuda)-)' constraints/colab-gpu.txt > "$VENV/colab-pins.txt"
  constraints=(-c "$VENV/colab-pins.txt")
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet "torch==2.13.0"
"$VENV/bin/python" -m pip install --quiet -r requirements.txt "${constraints[@]}"
"$VENV/bin/python" -m pip install --quiet --no-deps -e .
"$VENV/bin/python" -m ipykernel install --sys-prefix --name python3 >/dev/null
echo "environment ready: $VENV ($("$VENV/bin/python" -c 'import torch; print("torch", torch.__version__)'))"
