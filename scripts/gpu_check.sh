#!/usr/bin/env bash
# The first run on a GPU: the gpu tests, training, a 7B-like calibration, the CP benchmark.
# One CUDA GPU, ~6 min on an H100. Each stage runs under its own time limit, and every stage
# runs even when an earlier one failed (a lent GPU is a one-shot chance); the exit status is the
# number of stages that failed. Written to OUT_DIR (default reports/gpu_check), five files:
#   gpu_check.log        everything printed: the machine and the packages found, then each stage
#   1. the `gpu` tests: each installed varlen kernel (varlen / flash / te) against the torch
#      backend in bf16 on CP shards; 1-GPU bf16 training, stock and WLB (tests/megatron/test_gpu.py)
#   baseline.jsonl, wlb.jsonl
#   2. a 1-GPU NCCL bf16 training run in Megatron-LM's loop, stock Megatron then WLB (delay off),
#      ITERS iterations each, --attention-backend auto (the log names the kernel it picked)
#   calibration_7b.json
#   3. the cost-model calibration of a 7B-like model (2 layers of hidden 4096, 32 heads, 8 K/V
#      groups, head dim 128, FFN 14336) on this GPU, with its attention table (the selector's)
#   cp_bench.json
#   4. the CP micro-benchmark: each CP rank's attention, fwd+bwd, one rank after another on this
#      GPU, 7B-like heads in bf16, micro-batches cut Megatron-style from the wlbllm lengths at
#      32K, 64K and 128K tokens, CP = 2, 4, 8: per_seq, per_doc, mixed and adaptive (its choice
#      from stage 3's table)
#
#   bash scripts/gpu_check.sh
#   WHEELS=.whl OUT_DIR=$OUT bash scripts/gpu_check.sh     (the device tool: wheels carried in)
#   STAGES="3 4" bash scripts/gpu_check.sh                 (some stages again)
#   BUDGET_S=560 ...    no stage runs past this many seconds from the start (a stage's own limit
#                       shrinks to fit; one with under 30 s left is skipped, counted as failed)
#
# Needs a python3 ($PYTHON) with a CUDA build of torch, and megatron-core importable: WHEELS=DIR
# installs the wheels found there into /tmp/site first (machines that cannot download).
# DEVICE=cpu runs every stage at toy sizes on the CPU with gloo: the plumbing, not the GPU (a
# test does, tests/test_gpu_check.py).
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_help.sh"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${ROOT}"
PY="${PYTHON:-python3}"
OUT="${OUT_DIR:-${ROOT}/reports/gpu_check}"
ITERS="${ITERS:-6}"
STAGES="${STAGES:-1 2 3 4}"
DEVICE="${DEVICE:-gpu}"
mkdir -p "${OUT}"
exec > >(tee -a "${OUT}/gpu_check.log") 2>&1
if [[ -n "${WHEELS:-}" ]]; then
  "${PY}" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "${WHEELS}"/*.whl || exit 1
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:${PYTHONPATH}}"
fi
export PYTHONUNBUFFERED=1
export PYTHON="${PY}"  # the interpreter _megatron.sh asks which extensions import
source "${ROOT}/scripts/_megatron.sh"  # LLAMA_ARGS, STOCK_ARGS, DEVICE_ARGS (DEVICE=cpu|gpu)
"${PY}" - <<'EOF'
import importlib.util, platform, torch
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"
print("torch", torch.__version__, "cuda", torch.version.cuda, gpu, platform.python_version())
for m in ("megatron.core", "flash_attn", "transformer_engine", "torch.nn.attention.varlen"):
    print(m, "yes" if importlib.util.find_spec(m) else "no")
EOF

if [[ ${DEVICE} == gpu ]]; then
  TRAIN_SIZE=(--num-layers 4 --hidden-size 1024 --num-attention-heads 16 --num-query-groups 4
              --seq-length 16384 --max-position-embeddings 16384 --bf16)
  SIZE_7B=(--num-layers 2 --hidden-size 4096 --ffn-hidden-size 14336 --num-attention-heads 32
           --num-query-groups 8 --seq-length 16384 --max-position-embeddings 16384 --bf16)
  CP_BENCH=(--one-device --device cuda --dtype bfloat16 --heads 32 --kv-heads 8 --head-dim 128
            --context-length 32768,65536,131072 --cp-sizes 2,4,8 --num-microbatches 16 --reps 1)
  LIMITS=(200 120 150 240)
else  # toy sizes on the CPU
  TRAIN_SIZE=(--num-layers 1 --hidden-size 64 --num-attention-heads 4 --num-query-groups 2
              --seq-length 1024 --max-position-embeddings 1024)
  SIZE_7B=(--num-layers 1 --hidden-size 64 --ffn-hidden-size 128 --num-attention-heads 4
           --num-query-groups 2 --seq-length 512 --max-position-embeddings 512)
  CP_BENCH=(--one-device --device cpu --heads 4 --kv-heads 2 --head-dim 16
            --context-length 256,512 --cp-sizes 2,4 --num-microbatches 2 --reps 1)
  LIMITS=(240 150 300 300)
fi
COMMON=(--group-query-attention "${LLAMA_ARGS[@]}" "${DEVICE_ARGS[@]}" --micro-batch-size 1
        --tokenizer-type NullTokenizer --vocab-size 32000 --mock-data --mock-num-docs 4000
        --mock-length-scale 0.125 --seed 1234 --attention-backend auto)
TRAIN=(--global-batch-size 8 --train-iters "${ITERS}" --lr 3e-4 --lr-decay-iters 1000
       --eval-iters 0 --eval-interval 1000 --log-interval 1 --eod-mask-loss)

FAILED=()
stage() {  # stage N LIMIT_S COMMAND...: run it if N is in STAGES, time-limited; note a failure
  local n=$1 limit=$2 rc=0 t0=${SECONDS}
  shift 2
  [[ " ${STAGES} " == *" ${n} "* ]] || return 0
  if [[ -n "${BUDGET_S:-}" ]]; then
    local left=$((BUDGET_S - SECONDS))
    if (( left < 30 )); then
      echo "== stage ${n}: skipped, ${left} s of BUDGET_S=${BUDGET_S} left"
      FAILED+=("${n}")
      return 0
    fi
    (( limit <= left - 20 )) || limit=$((left - 20))
  fi
  echo "== stage ${n} (limit ${limit} s): $*"
  timeout --kill-after 15 "${limit}" "$@" || rc=$?
  echo "== stage ${n}: exit ${rc} after $((SECONDS - t0)) s"
  (( rc == 0 )) || FAILED+=("${n}")
}
RUN=("${PY}" -m torch.distributed.run --standalone --nproc_per_node 1 pretrain_gpt_wlb.py
     "${TRAIN_SIZE[@]}" "${COMMON[@]}" "${TRAIN[@]}")

stage 1 "${LIMITS[0]}" "${PY}" -m pytest -q -m gpu -p no:cacheprovider -rs \
  tests/cp/test_kernels.py tests/megatron/test_gpu.py
stage 2 "${LIMITS[1]}" "${RUN[@]}" "${STOCK_ARGS[@]}" --log-json "${OUT}/baseline.jsonl"
stage 2 "${LIMITS[1]}" "${RUN[@]}" --wlb-packing wlb --wlb-outlier-thresholds none \
  --log-json "${OUT}/wlb.jsonl"
stage 3 "${LIMITS[2]}" "${PY}" -m tools.calibrate_cost_model "${SIZE_7B[@]}" "${COMMON[@]}" \
  --out "${OUT}/calibration_7b.json"
TABLE="${OUT}/calibration_7b.json"
if [[ ! -f ${TABLE} ]]; then
  TABLE="${ROOT}/wlb/cp/tables/cpu_torch_sdpa.json"
  echo "[gpu_check] no stage-3 calibration: the adaptive choice reads ${TABLE}"
fi
stage 4 "${LIMITS[3]}" "${PY}" -m tools.bench_cp "${CP_BENCH[@]}" --with-mixed \
  --table "${TABLE}" --out "${OUT}/cp_bench.json"
echo "[gpu_check] wrote ${OUT}; stages failed: ${FAILED[*]:-none}"
exit "${#FAILED[@]}"
