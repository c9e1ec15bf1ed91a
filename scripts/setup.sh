#!/usr/bin/env bash
# Create .venv (or $VENV) with everything the tutorials and tests need, on a machine with only Python.
# torch==2.13.0 goes in first: on a CPU-only machine that is a CPU build, and the requirements'
# torch range is then already met (a bare `torch` requirement would pull the CUDA packages).
# COLAB_PINNED=1 holds every package that Colab's GPU runtime ships at Colab's version
# (constraints/colab-gpu.txt), except torch and its CUDA stack (torch stays the CPU build) and the packaging
# tools (the CPU torch 2.13 needs setuptools >= 77, Colab ships 75.2).
# Everything after torch goes in with uv (from PyPI, into the venv): it resolves and installs the requirements in
# about 12 s where pip takes about 100 s, and keeps the torch already there because 2.13.0 meets the range.
# --compile-bytecode: pip writes every module's .pyc at install, uv does not by default; where
# PYTHONDONTWRITEBYTECODE=1 (as on the CI machines) every process would then compile transformers, plotly and the
# rest from source again at each import (it made the Gemma rehearsal's notebooks up to 3x slower).
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
"$VENV/bin/python" -m pip install --quiet "torch==2.13.0" uv
uv=("$VENV/bin/uv" pip install --quiet --compile-bytecode --python "$VENV/bin/python")
"${uv[@]}" -r requirements.txt "${constraints[@]}"
"${uv[@]}" --no-deps -e .
"$VENV/bin/python" -m ipykernel install --sys-prefix --name python3 >/dev/null
echo "environment ready: $VENV ($("$VENV/bin/python" -c 'import torch; print("torch", torch.__version__)'))"
