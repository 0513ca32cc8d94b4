#!/usr/bin/env bash
# Check the cluster simulator against measured CPU runs: predicted vs measured iteration time.
#   bash scripts/validate_sim.sh            # ~12 min here: calibrate, 6 training runs, replay
# 1. Runs scripts/bench_cpu.sh (baseline and WLB, CP=2 / DP=2 / PP=2, 2 processes each) into
#    OUT_DIR unless its logs are already there (REUSE=1 keeps them).
# 2. Calibrates the hardware profile with two calibrations running at once, so that both cores
#    are busy as in the 2-process runs (a lone process runs ~10% faster here).
# 3. Replays every run's plans through tools/simulate_cluster.py validate (plan digests and CP
#    strategies checked) with the mean of the two calibrations (CAL_ONE=file: one calibration).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_help.sh"
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
cd "${ROOT}"
OUT="${OUT_DIR:-${ROOT}/reports/sim_validate}"
ITERS="${ITERS:-12}"
export OUT_DIR="${OUT}" ITERS
mkdir -p "${OUT}"
COST="${OUT}/cost_model_l2_h64_a4_s8192.json"
if [[ "${REUSE:-0}" != 1 || ! -f "${OUT}/pp2_wlb.jsonl" ]]; then
  CONFIGS="cp2 dp2 pp2" bash scripts/bench_cpu.sh
fi
MODEL=(--num-layers 2 --hidden-size 64 --num-attention-heads 4 --seq-length 8192
       --global-batch-size 8)
DATA=(--mock-data --mock-num-docs 6000 --mock-length-scale 0.03125
      --mock-length-sample "${ROOT}/data/doc_lengths/doc_lengths_wlbllm.json")
TRAIN=(--train-iters "${ITERS}" --lr-decay-iters 1000 --seed 1234 --wlb-cost-model "${COST}")
CAL="${OUT}/calib_loaded.json"
if [[ "${REUSE:-0}" != 1 || ! -f "${CAL}" ]]; then
  echo "[validate_sim] calibrating under load (two calibrations at once) -> ${CAL}"
  MASTER_PORT=29611 "${VPY}" -m tools.calibrate_cost_model --out "${CAL}" "${MODEL[@]}" \
    "${DATA[@]}" > "${OUT}/calib_loaded.log" 2>&1 &
  MASTER_PORT=29612 "${VPY}" -m tools.calibrate_cost_model --out "${OUT}/calib_loaded_2.json" \
    "${MODEL[@]}" "${DATA[@]}" > "${OUT}/calib_loaded_2.log" 2>&1 &
  wait
fi
# both calibrations, averaged (CAL=file uses one)
if [[ -n "${CAL_ONE:-}" ]]; then CALS=("${CAL_ONE}"); else CALS=("${CAL}" "${OUT}/calib_loaded_2.json"); fi
declare -A LAYOUT=([cp2]="--context-parallel-size 2" [dp2]=""
                   [pp2]="--pipeline-model-parallel-size 2")
for cfg in cp2 dp2 pp2; do
  # shellcheck disable=SC2086
  flags=(${LAYOUT[$cfg]})
  "${VPY}" -m tools.simulate_cluster validate --calibration "${CALS[@]}" \
    --log "${OUT}/${cfg}_baseline.jsonl" --json "${OUT}/${cfg}_baseline_validate.json" -- \
    "${MODEL[@]}" "${DATA[@]}" "${TRAIN[@]}" "${flags[@]}" \
    --wlb-packing megatron --wlb-cp-sharding per-seq
  "${VPY}" -m tools.simulate_cluster validate --calibration "${CALS[@]}" \
    --log "${OUT}/${cfg}_wlb.jsonl" --json "${OUT}/${cfg}_wlb_validate.json" -- \
    "${MODEL[@]}" "${DATA[@]}" "${TRAIN[@]}" "${flags[@]}" \
    --wlb-packing wlb --wlb-cp-sharding adaptive --wlb-outlier-thresholds none
done
