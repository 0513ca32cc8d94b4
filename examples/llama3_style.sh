#!/usr/bin/env bash
# A Llama-3-style Megatron-LM flag set, scaled down to run on a CPU, passed unchanged to
# Megatron-LM's loop with WLB (pretrain_gpt_wlb.py): the model and training flags of
# Megatron-LM's own Llama / GPT example scripts (argument groups as bash arrays), mock documents
# and Megatron's NullTokenizer; on a machine without a GPU, the flags megatron's CPU path needs.
#   bash examples/llama3_style.sh                      # WLB's defaults
#   bash examples/llama3_style.sh --wlb-packing megatron --dataloader-inter-document-masking
#                                                      # stock Megatron, document-masked
#   NPROC=2 bash examples/llama3_style.sh --context-parallel-size 2
#   PRINT_ARGS=1 bash examples/llama3_style.sh         # the flags, one per line
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

MODEL_ARGS=(
  --use-mcore-models --transformer-impl local
  --num-layers 2 --hidden-size 64 --ffn-hidden-size 224 --num-attention-heads 4
  --group-query-attention --num-query-groups 2
  --seq-length 256 --max-position-embeddings 512
  --position-embedding-type rope --use-rotary-position-embeddings --no-position-embedding
  --rotary-base 500000 --rotary-percent 1.0 --no-rope-fusion
  --swiglu --normalization RMSNorm --disable-bias-linear --untie-embeddings-and-output-weights
  --init-method-std 0.02 --attention-dropout 0.0 --hidden-dropout 0.0
  --no-masked-softmax-fusion --make-vocab-size-divisible-by 128
)
TRAINING_ARGS=(
  --micro-batch-size 1 --global-batch-size 4 --train-iters 4 --seed 1234
  --lr 3e-4 --min-lr 3e-5 --lr-decay-style cosine --lr-warmup-fraction 0.25 --lr-decay-iters 8
  --weight-decay 0.1 --adam-beta1 0.9 --adam-beta2 0.95 --adam-eps 1e-8 --clip-grad 1.0
  --exit-duration-in-mins 230 --eod-mask-loss
)
DATA_ARGS=(
  --mock-data --mock-num-docs 600 --tokenizer-type NullTokenizer --vocab-size 255
  --split 90,10,0
)
EVAL_AND_LOGGING_ARGS=(
  --log-interval 1 --eval-interval 2 --eval-iters 1 --save-interval 1000
)
ARGS=("${MODEL_ARGS[@]}" "${TRAINING_ARGS[@]}" "${DATA_ARGS[@]}" "${EVAL_AND_LOGGING_ARGS[@]}")
if ! { command -v nvidia-smi > /dev/null 2>&1 && nvidia-smi -L > /dev/null 2>&1; }; then
  # megatron on the CPU: gloo, and its CUDA fusions off (scripts/pretrain_gpt.sh's DEVICE=cpu)
  ARGS+=(--distributed-backend gloo --no-persist-layer-norm --no-gradient-accumulation-fusion
         --no-bias-swiglu-fusion --no-bias-dropout-fusion)
fi
if [[ "${PRINT_ARGS:-0}" == 1 ]]; then
  printf '%s\n' "${ARGS[@]}"
  exit 0
fi
source "${ROOT}/scripts/_venv.sh"
cd "${ROOT}"
exec "${VPY}" -m torch.distributed.run --standalone --nproc_per_node "${NPROC:-1}" \
  pretrain_gpt_wlb.py "${ARGS[@]}" "$@"
