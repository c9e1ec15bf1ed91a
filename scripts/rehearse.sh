#!/usr/bin/env bash
# Run the tutorials under nbmake against the offline Hub rehearsal (helpers.builders.rehearsal) at the smoke scale:
# the same cells as on Colab, resolved from a local Hugging Face home, for the Gemma-2-2B profile and the own
# Llama-style pair (or the profiles named as arguments). Copies run in outputs/notebooks/<profile>/ (conftest.py).
# CI runs this in .venv-colab, the environment pinned to Colab's versions (COLAB_PINNED=1 scripts/setup.sh):
#   VENV=.venv-colab bash scripts/rehearse.sh [gemma-2-2b] [rehearsal-llama]
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
[ -x "$VENV/bin/python" ] || bash scripts/setup.sh
HOME_DIR=outputs/rehearsal/hf
[ -f "$HOME_DIR/registry.yaml" ] || "$VENV/bin/python" -m helpers.builders.rehearsal "$HOME_DIR"
profiles=("$@")
[ ${#profiles[@]} -gt 0 ] || profiles=(gemma-2-2b rehearsal-llama)
for profile in "${profiles[@]}"; do
  echo "== rehearsal notebooks: $profile (scale ${CROSSCODER_SCALE:-smoke})"
  (
    eval "$("$VENV/bin/python" -c "
from helpers.builders.rehearsal import rehearsal_env
for key, value in rehearsal_env('$HOME_DIR', '$profile', '${CROSSCODER_SCALE:-smoke}').items():
    print(f'export {key}={value!r}')")"
    "$VENV/bin/python" -m pytest -p no:cacheprovider "outputs/notebooks/$profile"
  )
done
