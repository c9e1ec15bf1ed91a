#!/usr/bin/env bash
# Build the rendered tutorials (outputs/site/) from the executed notebooks in outputs/notebooks/toy/ and docs/, which the
# tests (.venv/bin/python -m pytest) or scripts/tutorials.sh write. Nothing is executed again here.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/uv ] || bash scripts/setup.sh   # a .venv from before uv gains it
.venv/bin/uv pip install --quiet --compile-bytecode --python .venv/bin/python -r requirements-docs.txt
NO_MKDOCS_2_WARNING=1 .venv/bin/python scripts/build_site.py
