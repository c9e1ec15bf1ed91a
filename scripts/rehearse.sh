#!/usr/bin/env bash
# Run tutorials against the offline Hub rehearsal (helpers.rehearsal) at the smoke scale, on the gemma-2-2b profile
# (or CROSSCODER_PAIR): the same cells as on Colab, resolved from a local Hugging Face home. CI runs the same
# notebooks in tests/test_notebooks.py. Usage:
#   bash scripts/rehearse.sh [notebooks/NN_name.ipynb ...]      (default: the pair's REHEARSED_NOTEBOOKS)
# Executed copies land in outputs/rehearsal/notebooks/<pair>/.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || bash scripts/setup.sh
HOME_DIR=outputs/rehearsal/hf
[ -f "$HOME_DIR/registry.yaml" ] || .venv/bin/python -m helpers.rehearsal "$HOME_DIR"
PAIR="${CROSSCODER_PAIR:-gemma-2-2b}"
eval "$(.venv/bin/python -c "
from helpers.rehearsal import rehearsal_env
for key, value in rehearsal_env('$HOME_DIR', '$PAIR', '${CROSSCODER_SCALE:-smoke}').items():
    print(f'export {key}={value!r}')")"
notebooks=("$@")
if [ ${#notebooks[@]} -eq 0 ]; then
  mapfile -t notebooks < <(.venv/bin/python -c "
from helpers.rehearsal import REHEARSED_NOTEBOOKS
import glob
for number in REHEARSED_NOTEBOOKS['$PAIR']:
    print(*glob.glob(f'notebooks/{number}_*.ipynb'))")
fi
mkdir -p "outputs/rehearsal/notebooks/$PAIR"
for notebook in "${notebooks[@]}"; do
  echo "== $notebook ($PAIR, scale $CROSSCODER_SCALE)"
  .venv/bin/jupyter nbconvert --to notebook --execute --ExecutePreprocessor.timeout=900 ${REHEARSE_ALLOW_ERRORS:+--allow-errors} \
    --output-dir "outputs/rehearsal/notebooks/$PAIR" "$notebook"
done
