#!/usr/bin/env bash
# Baseline (stock Megatron in Megatron-LM's loop) vs WLB, same model and data, on this CPU.
# For each layout in CONFIGS it trains twice (2 processes each, pretrain_gpt_wlb.py; both arms
# read the same mock documents, written once as .bin/.idx) and prints the iteration-time
# ratio, tokens/s, cost-model work/s, imbalance and the two loss curves side by side.
#   CONFIGS="cp2 dp2 pp2" ITERS=10 SEQ=8192 bash scripts/bench_cpu.sh
# It ends with OUT_DIR/results.json and plots (tools/bench_results.py collect); PUBLISH=1 records
# them, with this machine and commit, as docs/results/bench_cpu.json and refreshes
# docs/benchmarks.md.
# WLB runs with outlier delay off (the same document stream in the same order; only the cut at
# each global batch's end differs) unless DELAY=auto. Extra arguments go to both arms; WLB_FLAGS
# (a string) to the WLB arm only, e.g. WLB_FLAGS="--wlb-max-tokens 8192".
# ELASTIC=1 adds a third arm, WLB with --wlb-elastic-cp (experimental), compared with both, and
# prints tools/simulate_elastic.py's ideal for the same layout (elastic's fraction of the ideal);
# the all-gather is priced once per cost model by tools/calibrate_comm.py (2 processes).
# SHARDING sets the WLB arms' --wlb-cp-sharding (default adaptive).
# REPEATS=N runs the arms N times, interleaved (each repeat starts with the next arm), and prints
# each ratio's median over the repeats
# (tools/compare_runs.py repeats); the other figures come from the first repeat.
# Both arms are evaluated after the last iteration on the same held-out batches (--split 95,5,0;
# EVAL=0: off) and tools/compare_runs.py quality prints their validation losses.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_help.sh"
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
cd "${ROOT}"
OUT="${OUT_DIR:-${ROOT}/reports/bench_cpu}"
mkdir -p "${OUT}"
CONFIGS="${CONFIGS:-cp2 dp2 pp2}"
DELAY="${DELAY:-none}"
source "${ROOT}/scripts/_megatron.sh"  # LLAMA_ARGS, DEVICE_ARGS, STOCK_ARGS
MODEL=(
  --num-layers "${LAYERS:-2}" --hidden-size "${HIDDEN:-64}" --num-attention-heads "${HEADS:-4}"
  --seq-length "${SEQ:-8192}" --global-batch-size "${GBS:-8}"
)
# Megatron-LM's flags beside the model's (the calibration tool takes only the model's)
MEGATRON=("${LLAMA_ARGS[@]}" "${DEVICE_ARGS[@]}" --max-position-embeddings "${SEQ:-8192}"
          --micro-batch-size 1 --tokenizer-type NullTokenizer --vocab-size 257 --lr 3e-4
          --eod-mask-loss --log-interval 1 --data-cache-path "${OUT}/data_cache")
SAMPLE="${LENGTHS:-${ROOT}/data/doc_lengths/doc_lengths_wlbllm.json}"
DATA=(
  --mock-data --mock-num-docs "${DOCS:-6000}" --mock-length-scale "${SCALE:-0.03125}"
  --mock-length-sample "${SAMPLE}"
)
TRAIN=(--train-iters "${ITERS:-10}" --lr-decay-iters 1000 --seed "${SEED:-1234}")
# both arms evaluated on the same held-out batches after the last iteration (EVAL=0: off)
if [[ "${EVAL:-1}" == 0 ]]; then TRAIN+=(--eval-interval 1000 --eval-iters 0)
else TRAIN+=(--split 95,5,0 --eval-interval "${ITERS:-10}" --eval-iters 1); fi
# calibrated once per model shape and context length on this machine (again when the cached
# file predates this build's torch kernel)
COST="${OUT}/cost_model_l${LAYERS:-2}_h${HIDDEN:-64}_a${HEADS:-4}_s${SEQ:-8192}.json"
if [[ ! -f "${COST}" || -n "${RECALIBRATE:-}" ]] || stale_calibration "${COST}"; then
  echo "[bench_cpu] calibrating the cost model on this machine -> ${COST}"
  "${VPY}" -m tools.calibrate_cost_model --out "${COST}" "${MODEL[@]}" "${DATA[@]}" \
    | grep '^\[calibrate\] W'
fi
declare -A LAYOUT=(
  [cp2]="--context-parallel-size 2"
  [dp2]=""
  [pp2]="--pipeline-model-parallel-size 2"
  [pp2dp2]="--pipeline-model-parallel-size 2"
)
declare -A NPROC=([cp2]=2 [dp2]=2 [pp2]=2 [pp2dp2]=4)
declare -A DIMS=([cp2]="--dp 1 --cp 2 --pp 1" [dp2]="--dp 2 --cp 1 --pp 1"
                 [pp2]="--dp 1 --cp 1 --pp 2" [pp2dp2]="--dp 2 --cp 1 --pp 2")
run() {  # tag, flags...
  local tag=$1; shift
  "${VPY}" -m torch.distributed.run --standalone --nproc_per_node "${NPROC[${cfg}]}" \
    pretrain_gpt_wlb.py "${MODEL[@]}" "${MEGATRON[@]}" "${DATA[@]}" "${TRAIN[@]}" \
    --wlb-cost-model "${COST}" \
    --log-json "${OUT}/${tag}.jsonl" "$@" "${EXTRA[@]}" > "${OUT}/${tag}.log" 2>&1 \
    || { tail -20 "${OUT}/${tag}.log"; exit 1; }
}
EXTRA=("$@")
# shellcheck disable=SC2206
WLB_EXTRA=(${WLB_FLAGS:-})
WLB_ARM=(--wlb-packing wlb --wlb-cp-sharding "${SHARDING:-adaptive}" --wlb-outlier-thresholds
         "${DELAY}")
for cfg in ${CONFIGS}; do
  if [[ -z "${LAYOUT[$cfg]+set}" ]]; then
    echo "bench_cpu.sh: CONFIGS entry '${cfg}' unknown; choose from: ${!LAYOUT[*]}" >&2
    exit 2
  fi
  # shellcheck disable=SC2086
  flags=(${LAYOUT[$cfg]})
  rm -f "${OUT}/${cfg}"_{baseline,wlb,elastic}{,_r[0-9]*}.jsonl
  if [[ "${ELASTIC:-0}" == 1 ]] && ! grep -q elastic_split_efficiency "${COST}"; then
    # price elastic CP's all-gather and document split once per cost model, on 2 processes
    "${VPY}" -m torch.distributed.run --standalone --nproc_per_node 2 -m tools.calibrate_comm \
      --cost-model "${COST}" --split-sample "${SAMPLE}" --split-scale "${SCALE:-0.03125}" \
      --split-tokens $(( 2 * ${SEQ:-8192} )) 2>/dev/null \
      | grep '^\[calibrate_comm\] [0-9.]* ms +\|attention'
  fi
  arms=(baseline wlb)
  [[ "${ELASTIC:-0}" != 1 ]] || arms+=(elastic)
  for rep in $(seq 1 "${REPEATS:-1}"); do  # repeats interleave the arms, each first in turn
    sfx=""
    [[ "${rep}" == 1 ]] || sfx="_r${rep}"
    for k in "${!arms[@]}"; do
      arm="${arms[$(( (k + rep - 1) % ${#arms[@]} ))]}"
      case "${arm}" in
        baseline) run "${cfg}_baseline${sfx}" "${flags[@]}" "${STOCK_ARGS[@]}" ;;
        wlb) run "${cfg}_wlb${sfx}" "${flags[@]}" "${WLB_ARM[@]}" "${WLB_EXTRA[@]}" ;;
        elastic) run "${cfg}_elastic${sfx}" "${flags[@]}" "${WLB_ARM[@]}" "${WLB_EXTRA[@]}" \
                   --wlb-elastic-cp ;;
      esac
    done
  done
  echo "=== ${cfg}: baseline vs WLB (delay ${DELAY}) ==="
  "${VPY}" -m tools.compare_runs "${OUT}/${cfg}_baseline.jsonl" "${OUT}/${cfg}_wlb.jsonl" \
    | tee "${OUT}/${cfg}_compare.txt"
  if [[ "${EVAL:-1}" != 0 ]]; then
    "${VPY}" -m tools.compare_runs quality baseline="${OUT}/${cfg}_baseline.jsonl" \
      wlb="${OUT}/${cfg}_wlb.jsonl" --out "${OUT}/${cfg}_quality" | tee -a "${OUT}/${cfg}_compare.txt"
  fi
  if [[ "${ELASTIC:-0}" == 1 ]]; then
    for ref in wlb baseline; do
      "${VPY}" -m tools.compare_runs "${OUT}/${cfg}_${ref}.jsonl" "${OUT}/${cfg}_elastic.jsonl" \
        | tail -1 | sed "s/^WLB speed-up/${cfg}: elastic over ${ref}/" \
        | tee -a "${OUT}/${cfg}_compare.txt"
    done
    # the same layout and batches predicted: elastic CP's fraction of the ideal
    mapfile -t COEF < <("${VPY}" -c 'import sys
from wlb.cost_model import CostModel
from wlb.host.elastic import comm_price, split_efficiency
f = sys.argv[1]
c, (coef, fixed) = CostModel.from_json(f), comm_price(None, f)
for flag, v in (("--attn-coef", c.attn_coef), ("--linear-coef", c.linear_coef),
                ("--doc-coef", c.doc_coef), ("--comm-coef", coef), ("--comm-fixed", fixed),
                ("--split-efficiency", split_efficiency(f))):
    print(flag); print(v)' "${COST}")
    # shellcheck disable=SC2086
    "${VPY}" -m tools.simulate_elastic --scale "${SCALE:-0.03125}" --seq-length "${SEQ:-8192}" \
      ${DIMS[${cfg}]} --gbs "${GBS:-8}" --iters "${ITERS:-10}" --seed "${SEED:-1234}" \
      "${COEF[@]}" | tee -a "${OUT}/${cfg}_compare.txt"
  fi
  if (( ${REPEATS:-1} > 1 )); then  # the median over the interleaved repeats
    specs=()
    for arm in "${arms[@]}"; do
      files="${OUT}/${cfg}_${arm}.jsonl"
      for rep in $(seq 2 "${REPEATS}"); do files+=",${OUT}/${cfg}_${arm}_r${rep}.jsonl"; done
      specs+=("${arm}=${files}")
    done
    echo "=== ${cfg}: ${REPEATS} interleaved repeats ===" | tee -a "${OUT}/${cfg}_compare.txt"
    "${VPY}" -m tools.compare_runs repeats "${specs[@]}" | tee -a "${OUT}/${cfg}_compare.txt"
  fi
done
pairs=()
for cfg in ${CONFIGS}; do
  pairs+=("${cfg}=${OUT}/${cfg}_baseline.jsonl,${OUT}/${cfg}_wlb.jsonl")
  if [[ "${ELASTIC:-0}" == 1 ]]; then
    pairs+=("${cfg}+elastic=${OUT}/${cfg}_baseline.jsonl,${OUT}/${cfg}_elastic.jsonl")
  fi
done
SETTING="${LAYERS:-2} layers, hidden ${HIDDEN:-64}, seq ${SEQ:-8192}, ${GBS:-8} micro-batches, mock \
documents (lengths x ${SCALE:-0.03125}), ${ITERS:-10} iterations, delay ${DELAY}"
"${VPY}" -m tools.bench_results collect "${OUT}/results.json" "${pairs[@]}" \
  --plots "${OUT}/bench_cpu" --setting "${SETTING}"
echo "[bench_cpu] figures: ${OUT}/results.json"
if [[ -n "${PUBLISH:-}" ]]; then
  "${VPY}" -m tools.bench_results publish bench_cpu "${OUT}/results.json" \
    --command "CONFIGS='${CONFIGS}' ITERS=${ITERS:-10} SEQ=${SEQ:-8192} DELAY=${DELAY} PUBLISH=1 bash scripts/bench_cpu.sh $*"
fi
