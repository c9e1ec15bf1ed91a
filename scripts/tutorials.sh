#!/usr/bin/env bash
# Set everything up and run every tutorial notebook under nbmake, on the toy pair unless CROSSCODER_PAIR says
# otherwise. The sources stay clean: copies run in outputs/notebooks/<pair>/ and keep their outputs there
# (conftest.py), with whatever they write (dashboards, training runs).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
pair="${CROSSCODER_PAIR:-toy}"
.venv/bin/python -m pytest "outputs/notebooks/$pair"
echo "executed notebooks are in outputs/notebooks/$pair/"
