#!/usr/bin/env bash
# Same model, faster -- or a worse model? Validation loss of stock Megatron vs WLB.
# Three runs on the same data and seed, each evaluated on
# the same held-out batches: stock Megatron, WLB with outlier delay off, WLB with delay on
# (auto-tuned queues); then validation loss against tokens trained (table + plot).
#   bash scripts/quality.sh                          # ~2 minutes on 2 CPU cores
#   ITERS=60 SEQ=2048 bash scripts/quality.sh [extra flags for all three runs]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_help.sh"
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
cd "${ROOT}"
OUT="${OUT_DIR:-${ROOT}/reports/quality}"
mkdir -p "${OUT}"
CORPUS="${CORPUS:-${ROOT}/data/corpus/stdlib}"
if [[ ! -f "${CORPUS}.idx" ]]; then
  "${VPY}" -m tools.preprocess_data --input default --output-prefix "${CORPUS}"
fi
MODEL=(--num-layers 2 --hidden-size 128 --num-attention-heads 4 --seq-length "${SEQ:-1024}")
TRAIN=(
  --global-batch-size "${GBS:-8}" --train-iters "${ITERS:-40}" --lr 1e-3 --min-lr 1e-4
  --lr-warmup-iters 4 --seed "${SEED:-1234}" --data-path "${CORPUS}"
)
VALID=(--split 95,5,0 --eval-interval "${EVAL_INTERVAL:-10}" --eval-iters "${EVAL_ITERS:-2}")
declare -A ARM=(
  [stock]="--wlb-packing megatron --wlb-cp-sharding per-seq"
  [wlb-no-delay]="--wlb-packing wlb --wlb-outlier-thresholds none"
  [wlb-delay]="--wlb-packing wlb --wlb-outlier-thresholds auto"
)
for arm in stock wlb-no-delay wlb-delay; do
  rm -f "${OUT}/${arm}.jsonl"
  echo "[quality] ${arm}"
  # shellcheck disable=SC2086
  "${VPY}" pretrain_gpt_wlb.py "${MODEL[@]}" "${TRAIN[@]}" "${VALID[@]}" ${ARM[$arm]} \
    --log-interval 10 --log-json "${OUT}/${arm}.jsonl" "$@" > "${OUT}/${arm}.log" 2>&1 \
    || { tail -20 "${OUT}/${arm}.log"; exit 1; }
done
"${VPY}" -m tools.compare_runs quality stock="${OUT}/stock.jsonl" \
  wlb-no-delay="${OUT}/wlb-no-delay.jsonl" wlb-delay="${OUT}/wlb-delay.jsonl" --out "${OUT}"
