#!/usr/bin/env bash
# The main job: train the same GPT twice on CPU -- stock Megatron (baseline) and WLB -- on a real
# corpus built on the fly (the Python standard library cut into one document per definition,
# byte-level tokens), and write a comparison report (summary.md + plots).
#   bash scripts/quickstart.sh                  # 4D: PP=2 x CP=2 x DP=2 on 8 processes, 16 iterations
#   PP=1 DP=1 bash scripts/quickstart.sh        # CP=2 on 2 processes (one core per rank here)
#   any pretrain_gpt.sh / compare.sh setting (MODEL, TP, SEQ, ITERS, WLB_THRESHOLDS=auto, ...)
# Extra arguments are passed to both training runs.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
cd "${ROOT}"
export OUT_DIR="${OUT_DIR:-${ROOT}/reports/quickstart}"
CORPUS="${CORPUS:-${ROOT}/data/corpus/stdlib}"
mkdir -p "${OUT_DIR}"
if [[ ! -f "${CORPUS}.idx" ]]; then
  "${VPY}" -m tools.preprocess_data --input default --output-prefix "${CORPUS}"
fi
export MODEL="${MODEL:-tiny}" TP="${TP:-1}" PP="${PP:-2}" CP="${CP:-2}" DP="${DP:-2}"
export SEQ="${SEQ:-4096}" GBS="${GBS:-8}" ITERS="${ITERS:-16}" LR="${LR:-1e-3}"
export DATA_PATH="${CORPUS}"
# calibrated once per model and context length on this machine
export COST_MODEL="${COST_MODEL:-${OUT_DIR}/cost_model_${MODEL}_${SEQ}.json}"
if [[ ! -f "${COST_MODEL}" ]]; then
  echo "[quickstart] calibrating the WLB cost model for MODEL=${MODEL} on this machine"
  mapfile -t MODEL_FLAGS < <(PRINT_MODEL_ARGS=1 bash scripts/pretrain_gpt.sh)
  "${VPY}" -m tools.calibrate_cost_model --out "${COST_MODEL}" "${MODEL_FLAGS[@]}" \
    --seq-length "${SEQ}" --data-path "${CORPUS}" | grep '^\[calibrate\] W'
fi
bash scripts/compare.sh "$@"
