#!/usr/bin/env bash
# The one command for a GPU (no download; about 8 minutes on one H100 with every notebook):
#   scripts/gpu_check.sh [NN ...]           1. scripts/gpu_check.py: Gemma-2-2B-sized stand-ins with random weights,
#                                              each notebook's workload timed against the replication's way and its
#                                              peak memory against helpers.training.gpu_plan -> docs/gpu.md;
#                                           2. the toy notebooks NN ... (default: all) on cuda under nbmake.
#   scripts/gpu_check.sh --notebooks-only NN ...   step 2 alone (a second call on a lent machine: docs/running.md)
#   scripts/gpu_check.sh --cpu-smoke         step 1 at tiny sizes on the CPU (CI runs it, so the check cannot rot)
# Everything lands in outputs/gpu_check/ (gpu_check.json, gpu_check.md, notebooks.log, notebooks.xml); each step
# runs under a time limit, so the report is never lost. The unit tests are not run here: none of them uses a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
OUT_DIR=outputs/gpu_check
if [[ "${1:-}" == "--cpu-smoke" ]]; then
    exec "$PY" scripts/gpu_check.py --cpu-smoke --out "$OUT_DIR/cpu-smoke"
fi
stand_ins=1
if [[ "${1:-}" == "--notebooks-only" ]]; then
    stand_ins=0
    shift
    [[ $# -gt 0 ]] || { echo "--notebooks-only needs the notebooks' numbers, e.g. 08 10" >&2; exit 2; }
fi
notebooks=()
for number in "$@"; do
    matches=(notebooks/"$number"_*.ipynb)
    [[ "$number" =~ ^[0-9][0-9]$ && -f "${matches[0]}" ]] || {
        echo "no tutorial numbered '$number' (expected two digits, one of: $(ls notebooks | grep -o '^[0-9][0-9]' | tr '\n' ' '))" >&2
        exit 2
    }
    notebooks+=("outputs/notebooks/toy/$(basename "${matches[0]}")")
done
[[ ${#notebooks[@]} -gt 0 ]] || notebooks=(outputs/notebooks/toy)
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: use --cpu-smoke')"
mkdir -p "$OUT_DIR"
status=0
if [[ $stand_ins == 1 ]]; then
    timeout 240 "$PY" scripts/gpu_check.py --out "$OUT_DIR" --report docs/gpu.md || status=$?
fi
# conftest.py copies the toy notebooks into outputs/notebooks/toy/ and runs the copies (slowest first)
CROSSCODER_PAIR=toy timeout 300 "$PY" -m pytest -q -p no:cacheprovider -o addopts="" -n 8 --maxschedchunk 1 \
    --nbmake --nbmake-timeout=280 --overwrite --durations=0 --junitxml="$OUT_DIR/notebooks.xml" \
    "${notebooks[@]}" 2>&1 | tee "$OUT_DIR/notebooks.log" || status=$?
echo "device check: reports in $OUT_DIR/; exit status $status"
exit "$status"
