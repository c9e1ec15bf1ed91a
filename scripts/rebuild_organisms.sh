#!/usr/bin/env bash
# Rebuild every artifact of notebook 08 from scratch, one after the other: the toy organisms' chat model
# (fine-tuned from the packaged toy base model), the L1, BatchTopK and delta crosscoders on the organisms pair, and
# the diff-SAE. Deterministic from their seeds; the total time is printed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || bash scripts/setup.sh
SECONDS=0
.venv/bin/python -m helpers.builders.toy_pair --organisms
.venv/bin/python -m helpers.training.recipes toy-release --name toy-organisms-l3
.venv/bin/python -m helpers.training.recipes toy-release --name toy-organisms-l3-batchtopk
.venv/bin/python -m helpers.training.recipes toy-release --name toy-organisms-l3-delta
.venv/bin/python -m helpers.methods.diff_sae
echo "rebuilt the toy organisms' artifacts in ${SECONDS} s"
