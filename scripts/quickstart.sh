#!/usr/bin/env bash
# The main job: train the same GPT twice on CPU -- stock Megatron (baseline) and WLB -- on a real
# corpus built on the fly (the Python standard library's sources, byte-level tokens), and compare.
#   bash scripts/quickstart.sh                 # CP=2 on 2 processes, 20 iterations
#   ITERS=50 LAYOUT="--pipeline-model-parallel-size 2" bash scripts/quickstart.sh
# Extra arguments are passed to both training runs.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
cd "${ROOT}"
OUT="${OUT_DIR:-${ROOT}/reports/quickstart}"
CORPUS="${CORPUS:-${ROOT}/data/corpus/stdlib}"
NPROC="${NPROC:-2}"
mkdir -p "${OUT}"
if [[ ! -f "${CORPUS}.idx" ]]; then
  "${VPY}" tools/preprocess_data.py --input default --output-prefix "${CORPUS}"
fi
MODEL=(
  --num-layers "${LAYERS:-2}" --hidden-size "${HIDDEN:-128}" --num-attention-heads "${HEADS:-4}"
  --seq-length "${SEQ:-4096}" --global-batch-size "${GBS:-8}"
)
TRAIN=(--data-path "${CORPUS}" --train-iters "${ITERS:-20}" --lr 1e-3 --lr-warmup-iters 2
       --min-lr 1e-4 --seed "${SEED:-1234}" --log-interval 5)
# shellcheck disable=SC2206
LAYOUT_FLAGS=(${LAYOUT:---context-parallel-size 2})
COST="${OUT}/cost_model.json"
if [[ ! -f "${COST}" ]]; then
  echo "[quickstart] calibrating the WLB cost model for this model on this machine"
  "${VPY}" tools/calibrate_cost_model.py --out "${COST}" "${MODEL[@]}" \
    --data-path "${CORPUS}" | grep '^\[calibrate\] W'
fi
for mode in baseline wlb; do
  if [[ ${mode} == baseline ]]; then
    WLB=(--wlb-packing megatron --wlb-cp-sharding per-seq)
  else
    WLB=(--wlb-packing wlb --wlb-cp-sharding adaptive --wlb-outlier-thresholds "${DELAY:-none}")
  fi
  echo "[quickstart] training ${mode}: ${LAYOUT_FLAGS[*]} ${WLB[*]}"
  rm -f "${OUT}/${mode}.jsonl"
  "${VPY}" -m torch.distributed.run --standalone --nproc_per_node "${NPROC}" pretrain_gpt_wlb.py \
    "${MODEL[@]}" "${TRAIN[@]}" "${LAYOUT_FLAGS[@]}" "${WLB[@]}" --wlb-cost-model "${COST}" \
    --log-json "${OUT}/${mode}.jsonl" "$@" 2>&1 | grep -E '^ \[|^\[wlb\]|Error|error' || true
  [[ -s "${OUT}/${mode}.jsonl" ]] || { echo "[quickstart] ${mode} run failed"; exit 1; }
done
"${VPY}" tools/compare_runs.py "${OUT}/baseline.jsonl" "${OUT}/wlb.jsonl" | tee "${OUT}/compare.txt"
