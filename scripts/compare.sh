#!/usr/bin/env bash
# Stock Megatron vs WLB: one layout trained twice, then a report folder with the verdict.
# Train the same model on the same data and seed twice -- stock Megatron (WLB=0) and WLB (WLB=1)
# -- through scripts/pretrain_gpt.sh, then write a report folder (summary.md + PNG plots).
#   TP=1 PP=2 CP=2 DP=1 ITERS=20 bash scripts/compare.sh [extra pretrain flags]
# Settings are those of pretrain_gpt.sh; OUT_DIR picks the report folder; WLB_THRESHOLDS=none
# (default here) keeps outlier delay off so both runs train the same document stream in the same
# order (Megatron cuts each global batch at exactly N x seq-length tokens, WLB ends it at a
# document boundary, so WLB's batches drift slowly behind). Both runs are evaluated on the same
# held-out batches (--split 95,5,0, every EVAL_INTERVAL iterations; EVAL=0 turns it off) and the
# report adds validation loss against tokens trained. WLB_FLAGS (a string) goes to the WLB run
# only. The terminal gets one progress line per iteration; the full logs are in OUT_DIR.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_help.sh"
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
cd "${ROOT}"
OUT="${OUT_DIR:-${ROOT}/reports/compare}"
mkdir -p "${OUT}"
export WLB_THRESHOLDS="${WLB_THRESHOLDS:-none}"
VALID=()
if [[ "${EVAL:-1}" != 0 ]]; then
  VALID=(--split 95,5,0 --eval-interval "${EVAL_INTERVAL:-4}" --eval-iters "${EVAL_ITERS:-1}")
fi
# shellcheck disable=SC2206
WLB_EXTRA=(${WLB_FLAGS:-})
took=""
for mode in baseline wlb; do
  rm -f "${OUT}/${mode}.jsonl"
  flags=()
  if [[ ${mode} == baseline ]]; then
    echo "[compare] run 1/2: stock Megatron (ETA: per iteration below; logs: ${OUT}/${mode}.log)"
  else
    flags=("${WLB_EXTRA[@]}")
    echo "[compare] run 2/2: WLB (ETA ~${took} s, the stock run's time; logs: ${OUT}/${mode}.log)"
  fi
  t0=$(date +%s)
  WLB=$([[ ${mode} == wlb ]] && echo 1 || echo 0) LOG_JSON="${OUT}/${mode}.jsonl" \
    LOG_INTERVAL="${LOG_INTERVAL:-1}" bash scripts/pretrain_gpt.sh "${VALID[@]}" "$@" \
    "${flags[@]}" 2>&1 | tee "${OUT}/${mode}.log" | "${VPY}" -m tools.compare_runs follow --label "${mode}" \
    || { tail -30 "${OUT}/${mode}.log"; echo "[compare] ${mode} run failed" >&2; exit 1; }
  took=$(( $(date +%s) - t0 ))
done
echo "[compare] report (ETA ~5 s)"
LAYOUT_NAME=""
for k in TP PP CP DP; do (( ${!k:-1} > 1 )) && LAYOUT_NAME+="${LAYOUT_NAME:+ x }${k}=${!k}"; done
"${VPY}" -m tools.compare_report "${OUT}/baseline.jsonl" "${OUT}/wlb.jsonl" --out "${OUT}" \
  --nproc $(( ${TP:-1} * ${PP:-1} * ${CP:-1} * ${DP:-1} )) \
  --title "baseline vs WLB: MODEL=${MODEL:-tiny} TP=${TP:-1} PP=${PP:-1} CP=${CP:-1} DP=${DP:-1}" \
  --layout "${LAYOUT_NAME}" --setting "${SETTING:-MODEL=${MODEL:-tiny}, seq ${SEQ:-2048}}"
