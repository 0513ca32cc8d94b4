#!/usr/bin/env bash
# Train the same model on the same data and seed twice -- stock Megatron (WLB=0) and WLB (WLB=1)
# -- through scripts/pretrain_gpt.sh, then write a report folder (summary.md + PNG plots).
#   TP=1 PP=2 CP=2 DP=1 ITERS=20 bash scripts/compare.sh [extra pretrain flags]
# Settings are those of pretrain_gpt.sh; OUT_DIR picks the report folder; WLB_THRESHOLDS=none
# (default here) keeps outlier delay off so both runs train the same document stream in the same
# order (Megatron cuts each global batch at exactly N x seq-length tokens, WLB ends it at a
# document boundary, so WLB's batches drift slowly behind). Both runs are evaluated on the same
# held-out batches (--split 95,5,0, every EVAL_INTERVAL iterations; EVAL=0 turns it off) and the
# report adds validation loss against tokens trained.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
cd "${ROOT}"
OUT="${OUT_DIR:-${ROOT}/reports/compare}"
mkdir -p "${OUT}"
export WLB_THRESHOLDS="${WLB_THRESHOLDS:-none}"
VALID=()
if [[ "${EVAL:-1}" != 0 ]]; then
  VALID=(--split 95,5,0 --eval-interval "${EVAL_INTERVAL:-4}" --eval-iters "${EVAL_ITERS:-1}")
fi
for mode in baseline wlb; do
  rm -f "${OUT}/${mode}.jsonl"
  echo "[compare] ${mode}: TP=${TP:-1} PP=${PP:-1} CP=${CP:-1} DP=${DP:-1} MODEL=${MODEL:-tiny}"
  WLB=$([[ ${mode} == wlb ]] && echo 1 || echo 0) LOG_JSON="${OUT}/${mode}.jsonl" \
    LOG_INTERVAL="${LOG_INTERVAL:-5}" bash scripts/pretrain_gpt.sh "${VALID[@]}" "$@" > "${OUT}/${mode}.log" 2>&1 \
    || { tail -30 "${OUT}/${mode}.log"; echo "[compare] ${mode} run failed" >&2; exit 1; }
  grep -E '^ \[' "${OUT}/${mode}.log" | tail -2 || true
done
"${VPY}" -m tools.compare_report "${OUT}/baseline.jsonl" "${OUT}/wlb.jsonl" --out "${OUT}" \
  --nproc $(( ${TP:-1} * ${PP:-1} * ${CP:-1} * ${DP:-1} )) \
  --title "baseline vs WLB: MODEL=${MODEL:-tiny} TP=${TP:-1} PP=${PP:-1} CP=${CP:-1} DP=${DP:-1}"
echo "[compare] report: ${OUT}/summary.md"
