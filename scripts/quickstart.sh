#!/usr/bin/env bash
# The main job: stock Megatron vs WLB on a real corpus, sized to this machine, with a verdict.
# The same GPT is trained twice (stock, then WLB) on a layout with one core per rank where it
# can, then a three-line verdict and a report (summary.md + plots).
#   bash scripts/quickstart.sh                # layout from the cores: CP=2 below 8 cores, else 4d
#   LAYOUT=cp2|dp2|4d bash scripts/quickstart.sh   # force one (4d: PP=2 x CP=2 x DP=2, 8 processes)
#   TP=1 PP=2 CP=2 DP=1 bash scripts/quickstart.sh # or any layout, with any pretrain_gpt.sh setting
# Phases: corpus, calibration, stock run, WLB run, report; each prints an ETA, the full logs go
# to the report folder (OUT_DIR, default reports/quickstart). Extra arguments reach both runs.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_help.sh"
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
cd "${ROOT}"
export OUT_DIR="${OUT_DIR:-${ROOT}/reports/quickstart}"
CORPUS="${CORPUS:-${ROOT}/data/corpus/stdlib}"
mkdir -p "${OUT_DIR}"
CORES="${CORES:-$(nproc)}"  # the cores this process may run on (sched_getaffinity)
if [[ -z "${LAYOUT:-}" ]]; then
  if [[ -n "${TP:-}${PP:-}${CP:-}${DP:-}" ]]; then LAYOUT=custom
  elif (( CORES >= 8 )); then LAYOUT=4d
  else LAYOUT=cp2; fi
fi
case "${LAYOUT}" in
  # one core per rank where the machine has them (docs/launch.md#the-quickstart says why)
  cp2) export TP=1 PP=1 CP=2 DP=1 ;;
  dp2) export TP=1 PP=1 CP=1 DP=2 ;;
  4d) export TP=1 PP=2 CP=2 DP=2 ITERS="${ITERS:-16}" ;;
  custom) export TP="${TP:-1}" PP="${PP:-1}" CP="${CP:-1}" DP="${DP:-1}" ;;
  *) echo "quickstart.sh: LAYOUT=${LAYOUT} unknown; choose cp2, dp2 or 4d (or set TP/PP/CP/DP)" >&2
     exit 2 ;;
esac
export MODEL="${MODEL:-tiny}" SEQ="${SEQ:-4096}" GBS="${GBS:-8}" ITERS="${ITERS:-10}"
export LR="${LR:-1e-3}" DATA_PATH="${CORPUS}"
NPROC=$((TP * PP * CP * DP))
echo "[quickstart] ${CORES} cores -> layout ${LAYOUT}: TP=${TP} PP=${PP} CP=${CP} DP=${DP}" \
     "(${NPROC} processes), MODEL=${MODEL}, seq ${SEQ}, ${GBS} micro-batches x ${ITERS} iterations"
[[ "${PRINT_LAYOUT:-0}" == 1 ]] && exit 0  # the tests check the choice
if (( NPROC > CORES )); then
  echo "[quickstart] note: ${NPROC} processes share ${CORES} cores, so imbalance costs less time" \
       "than on one device per rank and the speed-up shows less (the report says so)"
fi
phase() { echo "[quickstart] phase $1/5: $2 (ETA $3)"; }

phase 1 "corpus ${CORPUS}" "$([[ -f "${CORPUS}.idx" ]] && echo "0 s, built" || echo "~5 s")"
if [[ ! -f "${CORPUS}.idx" ]]; then
  "${VPY}" -m tools.preprocess_data --input default --output-prefix "${CORPUS}" \
    > "${OUT_DIR}/corpus.log" 2>&1 || { cat "${OUT_DIR}/corpus.log"; exit 1; }
  tail -1 "${OUT_DIR}/corpus.log"
fi

# the cost model, calibrated once per model and context length on this machine
CACHED="${OUT_DIR}/cost_model_${MODEL}_${SEQ}.json"
# a cached calibration that predates this build's torch kernel is redone (a file you name is not)
[[ -n "${COST_MODEL:-}" || ! -f "${CACHED}" ]] || ! stale_calibration "${CACHED}" \
  || rm -f "${CACHED}"
export COST_MODEL="${COST_MODEL:-${CACHED}}"
phase 2 "cost-model calibration" "$([[ -f "${COST_MODEL}" ]] && echo "0 s, done" || echo "~40 s")"
if [[ ! -f "${COST_MODEL}" ]]; then
  mapfile -t MODEL_FLAGS < <(PRINT_MODEL_ARGS=1 bash scripts/pretrain_gpt.sh)
  "${VPY}" -m tools.calibrate_cost_model --out "${COST_MODEL}" "${MODEL_FLAGS[@]}" \
    --seq-length "${SEQ}" --data-path "${CORPUS}" > "${OUT_DIR}/calibration.log" 2>&1 \
    || { tail -20 "${OUT_DIR}/calibration.log"; exit 1; }
  grep '^\[calibrate\] W' "${OUT_DIR}/calibration.log" | sed 's/^/  /'
fi

# WLB repacks stock Megatron's own global batches: both runs train the same tokens in every
# iteration, so the times compare like for like and the losses agree
export WLB_FLAGS="${WLB_FLAGS---wlb-global-batch megatron}"
export SETTING="${MODEL} GPT, seq-length ${SEQ}, ${GBS} micro-batches x ${ITERS} iterations, the \
stdlib corpus, ${NPROC} processes on ${CORES} cores"
export EVAL_INTERVAL="${EVAL_INTERVAL:-${ITERS}}"
phase 3 "training, stock Megatron then WLB (4/5), then the report (5/5)" "per iteration, below"
start=$(date +%s)
bash scripts/compare.sh "$@"
echo "[quickstart] done in $(( $(date +%s) - start )) s of training and report"
if [[ -n "${PUBLISH:-}" ]]; then  # the README's headline
  "${VPY}" -m tools.bench_results publish quickstart "${OUT_DIR}/results.json" \
    --command "bash scripts/quickstart.sh${*:+ $*}" | tail -1
fi
