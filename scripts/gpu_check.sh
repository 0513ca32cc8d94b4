#!/usr/bin/env bash
# GPU checks for one CUDA GPU: the gpu tests, a training comparison, the kernel table.
# GPU checks for one CUDA GPU, in one short run (~5 min on an H100):
#   1. the `gpu` tests: each installed varlen kernel (varlen / flash / te) against the torch
#      backend in bf16, on the segments of a CP=2 shard, and 1-GPU bf16 training
#      (tests/megatron/test_gpu.py);
#   2. a 1-GPU NCCL bf16 training run, baseline then WLB, a few iterations each, with
#      --attention-backend auto (the log names the kernel it picked);
#   3. the adaptive selector's attention table measured with that kernel (bf16, 128-row tiles);
#   4. the cost-model calibration of the same model on this GPU (fit, samples, kernel table).
# Everything is written to OUT_DIR (default reports/gpu_check).
#
# Needs a python3 with a CUDA build of torch. megatron-core (and optionally flash-attn /
# transformer-engine) must be importable; WHEELS=DIR installs the wheels found there first into
# /tmp/site (for machines that cannot download).
#   bash scripts/gpu_check.sh
#   WHEELS=.whl OUT_DIR=$OUT bash scripts/gpu_check.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_help.sh"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${ROOT}"
PY="${PYTHON:-python3}"
OUT="${OUT_DIR:-${ROOT}/reports/gpu_check}"
ITERS="${ITERS:-6}"
mkdir -p "${OUT}"
if [[ -n "${WHEELS:-}" ]]; then
  "${PY}" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "${WHEELS}"/*.whl
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:${PYTHONPATH}}"
fi
export PYTHONUNBUFFERED=1
"${PY}" - <<'EOF' | tee "${OUT}/env.txt"
import importlib.util, torch
print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))
for m in ("megatron.core", "flash_attn", "transformer_engine", "torch.nn.attention.varlen"):
    print(m, "yes" if importlib.util.find_spec(m) else "no")
EOF

echo "== 1. gpu kernel tests"
"${PY}" -m pytest -q -m gpu tests/cp/test_kernels.py tests/megatron/test_gpu.py -rs 2>&1 | tee "${OUT}/gpu_tests.txt"

MODEL=(--num-layers 4 --hidden-size 1024 --num-attention-heads 16 --group-query-attention --num-query-groups 4
       --seq-length 16384 --max-position-embeddings 16384 --global-batch-size 8 --micro-batch-size 1
       --bf16 --normalization RMSNorm --swiglu --disable-bias-linear --position-embedding-type rope
       --hidden-dropout 0 --attention-dropout 0)
DATA=(--mock-data --mock-num-docs 4000 --mock-length-scale 0.125 --tokenizer-type NullTokenizer
      --vocab-size 32000)
TRAIN=(--train-iters "${ITERS}" --lr 3e-4 --lr-decay-iters 1000 --seed 1234 --eval-iters 0
       --eval-interval 1000 --log-interval 1 --transformer-impl local --attention-backend auto
       --eod-mask-loss)
echo "== 2. 1-GPU NCCL training in Megatron-LM's loop: stock Megatron, then WLB (delay off)"
for mode in baseline wlb; do
  if [[ ${mode} == baseline ]]; then W=(--wlb-packing megatron --dataloader-inter-document-masking)
  else W=(--wlb-packing wlb --wlb-outlier-thresholds none); fi
  torchrun --standalone --nproc_per_node 1 pretrain_gpt_wlb.py "${MODEL[@]}" "${DATA[@]}" \
    "${TRAIN[@]}" "${W[@]}" --log-json "${OUT}/${mode}.jsonl" 2>&1 | tee "${OUT}/${mode}.log"
done

echo "== 3. attention table for the selector (the kernel auto picks)"
"${PY}" -m tools.calibrate_cost_model --attention-only "${MODEL[@]}" "${DATA[@]}" \
  --attention-backend auto --out "${OUT}/attention_table.json" 2>&1 | tail -3

echo "== 4. cost-model calibration on this GPU"
"${PY}" -m tools.calibrate_cost_model "${MODEL[@]}" "${DATA[@]}" --attention-backend auto \
  --out "${OUT}/calibration.json" 2>&1 | tee "${OUT}/calibration.log" | tail -8
echo "[gpu_check] wrote ${OUT}"
