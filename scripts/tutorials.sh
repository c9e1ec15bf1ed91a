#!/usr/bin/env bash
# Set everything up and run every tutorial notebook (on the toy pair unless CROSSCODER_PAIR says
# otherwise); executed copies land in outputs/notebooks/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mkdir -p outputs/notebooks
for notebook in notebooks/[0-9]*.ipynb; do
  echo "== $notebook"
  .venv/bin/jupyter nbconvert --to notebook --execute --ExecutePreprocessor.timeout=1800 \
    --output-dir outputs/notebooks "$notebook"
done
echo "executed notebooks are in outputs/notebooks/"
