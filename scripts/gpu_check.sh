#!/usr/bin/env bash
# The one command for a lent GPU (at most 8 minutes on one H100, no download):
#   1. scripts/gpu_check.py: Gemma-2-2B-sized stand-ins with random weights, each notebook's workload timed against
#      the replication's way and its peak memory against helpers.training.gpu_plan -> docs/gpu.md + outputs/gpu_check/;
#   2. the unit tests, then the toy notebooks, on cuda (each under a time limit, so the report is never lost).
# --cpu-smoke runs step 1 at tiny sizes on the CPU instead (CI runs it, so the check cannot rot).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
if [[ "${1:-}" == "--cpu-smoke" ]]; then
    exec "$PY" scripts/gpu_check.py --cpu-smoke --out outputs/gpu_check/cpu-smoke
fi
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: use --cpu-smoke')"
timeout 240 "$PY" scripts/gpu_check.py --out outputs/gpu_check --report docs/gpu.md
status=0
timeout 90 "$PY" -m pytest -q -p no:cacheprovider -o addopts="" -n 8 tests 2>&1 | tail -20 || status=$?
# conftest.py copies the toy notebooks into outputs/notebooks/toy/ and runs the copies (slowest first)
timeout 150 "$PY" -m pytest -q -p no:cacheprovider -o addopts="" -n 8 --maxschedchunk 1 --nbmake \
    --nbmake-timeout=140 --overwrite outputs/notebooks/toy 2>&1 | tail -20 || status=$?
echo "device check: report in docs/gpu.md; tests and notebooks exit status $status"
exit "$status"
