#!/usr/bin/env bash
# Run tutorials on the gemma-2-2b profile against the offline Hub rehearsal (helpers.rehearsal), at the smoke
# scale: the same cells as on Colab, resolved from a local Hugging Face home. Usage:
#   bash scripts/rehearse.sh [notebooks/NN_name.ipynb ...]      (default: 00 to 07)
# Executed copies land in outputs/rehearsal/notebooks/.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || bash scripts/setup.sh
HOME_DIR=outputs/rehearsal/hf
[ -d "$HOME_DIR/hub" ] || .venv/bin/python -m helpers.rehearsal "$HOME_DIR"
mkdir -p outputs/rehearsal/notebooks
export HF_HOME="$PWD/$HOME_DIR" HF_HUB_OFFLINE=1 HF_TOKEN="${HF_TOKEN:-rehearsal}" CROSSCODER_PAIR="${CROSSCODER_PAIR:-gemma-2-2b}"
export CROSSCODER_SCALE="${CROSSCODER_SCALE:-smoke}"
notebooks=("$@")
# default: 00-07 (notebook 08 scores methods on the toy organisms, whose ground truth only the toy pair has)
[ ${#notebooks[@]} -gt 0 ] || notebooks=(notebooks/0[0-7]_*.ipynb)
for notebook in "${notebooks[@]}"; do
  echo "== $notebook ($CROSSCODER_PAIR, scale $CROSSCODER_SCALE)"
  .venv/bin/jupyter nbconvert --to notebook --execute --ExecutePreprocessor.timeout=900 ${REHEARSE_ALLOW_ERRORS:+--allow-errors} \
    --output-dir outputs/rehearsal/notebooks "$notebook"
done
