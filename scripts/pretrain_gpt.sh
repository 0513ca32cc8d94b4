#!/usr/bin/env bash
# Launch Megatron-LM's training loop with WLB (or stock) on one node with torchrun.
# pretrain_gpt_wlb.py on one node, or one node of a multi-node job (the Slurm script sets
# NNODES / NODE_RANK / MASTER_ADDR).
# Every setting is a ${VAR:-default}; extra arguments (Megatron-LM's flags and WLB's) are passed
# through ("$@", last, so they override these).
#   MODEL=tiny TP=1 PP=2 CP=2 bash scripts/pretrain_gpt.sh --train-iters 20
#   MODEL=7b TP=8 PP=4 CP=2 SEQ=131072 DATA_PATH=/data/mycorpus WLB=1 bash scripts/pretrain_gpt.sh
#   SAVE=ckpt RESTARTS=3 ...   saves to ckpt, resumes from it (LOAD defaults to SAVE) after
#                              each of up to 3 restarts of a failed job
#   DRY_RUN=1 ...   prints the command instead of running it
#   PRINT_MODEL_ARGS=1 ...   prints the model flags of MODEL, one per line
#   DEVICE=cpu|gpu   (default: gpu where nvidia-smi lists one; scripts/_megatron.sh says what
#                    each sets)
# WLB=0 gives stock Megatron (--wlb-packing megatron: Megatron-LM's own datasets, batches and CP
# slicing), document-masked (--dataloader-inter-document-masking) as the paper's baseline is;
# both arms mask the loss of each document's EOD (--eod-mask-loss: WLB never trains it against
# the next document), so they train the same objective.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_help.sh"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The project's venv (WLB_VENV, as scripts/_venv.sh), or PYTHON; never a silent fallback to a
# python3 that lacks the packages.
VENV="${WLB_VENV:-${ROOT}/.venv}"
PYTHON="${PYTHON:-${VENV}/bin/python}"
if [[ "${PRINT_MODEL_ARGS:-0}" != 1 && ! -x "${PYTHON}" ]] \
   && ! command -v "${PYTHON}" > /dev/null; then
  echo "pretrain_gpt.sh: no Python at ${PYTHON}: create the venv (bash scripts/run_tests.sh or" \
       "scripts/quickstart.sh do), or set WLB_VENV=DIR or PYTHON=EXE" >&2
  exit 2
fi

MODEL="${MODEL:-tiny}"
TP="${TP:-1}"; PP="${PP:-1}"; CP="${CP:-1}"; DP="${DP:-1}"
NNODES="${NNODES:-1}"; NODE_RANK="${NODE_RANK:-0}"
MASTER_ADDR="${MASTER_ADDR:-127.0.0.1}"; MASTER_PORT="${MASTER_PORT:-29500}"
WORLD=$((TP * PP * CP * DP))
if (( WORLD % NNODES )); then
  echo "pretrain_gpt.sh: TP*PP*CP*DP=${WORLD} (TP=${TP} PP=${PP} CP=${CP} DP=${DP}) is not" \
       "divisible by NNODES=${NNODES}" >&2
  exit 2
fi
NPROC_PER_NODE="${NPROC_PER_NODE:-$((WORLD / NNODES))}"

# Model sizes (the same shapes as wlb/sim/model.py:MODELS; a test keeps them equal). 7B/70B are the
# LLaMA-2 shapes; the paper does not give its 550M and 30B shapes (LLaMA-like, scaled), so these are
# our choice: that many parameters, head and K/V-group counts that divide the paper's TP sizes.
case "${MODEL}" in
  tiny) MODEL_ARGS=(--num-layers 4 --hidden-size 64 --ffn-hidden-size 256 --num-attention-heads 4 --group-query-attention
        --num-query-groups 2) ;;
  550m) MODEL_ARGS=(--num-layers 24 --hidden-size 1280 --num-attention-heads 16 --ffn-hidden-size 3456) ;;
  7b) MODEL_ARGS=(--num-layers 32 --hidden-size 4096 --num-attention-heads 32 --ffn-hidden-size 11008) ;;
  30b) MODEL_ARGS=(--num-layers 56 --hidden-size 7168 --num-attention-heads 56 --group-query-attention --num-query-groups 8
                   --ffn-hidden-size 19200) ;;
  70b) MODEL_ARGS=(--num-layers 80 --hidden-size 8192 --num-attention-heads 64 --group-query-attention --num-query-groups 8
                   --ffn-hidden-size 28672) ;;
  *) echo "pretrain_gpt.sh: MODEL=${MODEL} unknown; choose tiny, 550m, 7b, 30b or 70b" >&2; exit 2 ;;
esac

if [[ "${PRINT_MODEL_ARGS:-0}" == 1 ]]; then  # for tools that build the same model
  printf '%s\n' "${MODEL_ARGS[@]}"
  exit 0
fi
source "${ROOT}/scripts/_megatron.sh"  # LLAMA_ARGS, DEVICE_ARGS, STOCK_ARGS
MODEL_ARGS+=("${LLAMA_ARGS[@]}")

PARALLEL_ARGS=(
  --tensor-model-parallel-size "${TP}" --pipeline-model-parallel-size "${PP}"
  --context-parallel-size "${CP}"
)
[[ -n "${VPP_LAYERS:-}" ]] && PARALLEL_ARGS+=(--num-layers-per-virtual-pipeline-stage "${VPP_LAYERS}")
(( TP > 1 )) && PARALLEL_ARGS+=(--sequence-parallel)
[[ "${DISTOPT:-0}" == 1 ]] && PARALLEL_ARGS+=(--use-distributed-optimizer)

SEQ="${SEQ:-2048}"
TRAIN_ARGS=(
  --seq-length "${SEQ}" --max-position-embeddings "${SEQ}" --micro-batch-size 1
  --global-batch-size "${GBS:-$((PP * DP * 2))}"
  --train-iters "${ITERS:-20}" --lr "${LR:-3e-4}" --min-lr "${MIN_LR:-3e-5}"
  --lr-warmup-iters "${WARMUP:-2}" --lr-decay-style cosine --weight-decay 0.1 --adam-beta2 0.95
  --clip-grad 1.0 --seed "${SEED:-1234}" --eod-mask-loss
  --eval-interval "${EVAL_INTERVAL:-1000}" --eval-iters "${EVAL_ITERS:-0}"
)
[[ "${BF16:-0}" == 1 ]] && TRAIN_ARGS+=(--bf16)

if [[ -n "${DATA_PATH:-}" ]]; then  # (this project's corpora: the tokenizer from their sidecar)
  DATA_ARGS=(--data-path "${DATA_PATH}" --split "${SPLIT:-100,0,0}")
else
  DATA_ARGS=(--mock-data --tokenizer-type NullTokenizer --vocab-size 257)
fi

if [[ "${WLB:-1}" == 1 ]]; then
  WLB_ARGS=(--wlb-packing "${WLB_PACKING:-wlb}" --wlb-cp-sharding "${WLB_CP:-adaptive}"
            --wlb-outlier-thresholds "${WLB_THRESHOLDS:-auto}")
else
  WLB_ARGS=("${STOCK_ARGS[@]}")
fi
[[ -n "${COST_MODEL:-}" ]] && WLB_ARGS+=(--wlb-cost-model "${COST_MODEL}")

LOG_ARGS=(--log-interval "${LOG_INTERVAL:-1}")
[[ -n "${LOG_JSON:-}" ]] && LOG_ARGS+=(--log-json "${LOG_JSON}")
[[ -n "${SAVE:-}" ]] && LOG_ARGS+=(--save "${SAVE}" --save-interval "${SAVE_INTERVAL:-100}"
                                  --ckpt-format torch_dist)
# a restarted worker resumes from the last save: --load is --save unless LOAD says otherwise
# (LOAD= with nothing after it: no --load); nothing saved there yet starts from scratch
LOAD="${LOAD-${SAVE:-}}"
[[ -n "${LOAD}" ]] && LOG_ARGS+=(--load "${LOAD}")

if (( NNODES > 1 )); then
  LAUNCH=(--nnodes "${NNODES}" --node-rank "${NODE_RANK}" --master-addr "${MASTER_ADDR}"
          --master-port "${MASTER_PORT}")
else
  LAUNCH=(--standalone)
fi
RUN_ARGS=("${ROOT}/pretrain_gpt_wlb.py" "${MODEL_ARGS[@]}" "${PARALLEL_ARGS[@]}"
          "${TRAIN_ARGS[@]}" "${DATA_ARGS[@]}" "${DEVICE_ARGS[@]}" "${WLB_ARGS[@]}" "${LOG_ARGS[@]}"
          "$@")
# RESTARTS=N: torchrun restarts the job up to N times after a worker dies (node failure, OOM
# kill); each restart resumes from the last checkpoint (see LOAD above)
CMD=("${PYTHON}" -m torch.distributed.run "${LAUNCH[@]}" --nproc-per-node "${NPROC_PER_NODE}"
     --max-restarts "${RESTARTS:-0}" "${RUN_ARGS[@]}")
if [[ "${DRY_RUN:-0}" == 1 ]]; then
  printf '%q ' "${CMD[@]}"; echo
  exit 0
fi
export PYTHONPATH="${ROOT}${PYTHONPATH:+:${PYTHONPATH}}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
# Pre-flight: flags, layout, data and checkpoint checked in one plain process (no
# torch.distributed), so bad input is one line and exit 2 instead of one per rank plus torchrun's
# traceback. PREFLIGHT=0 skips it.
if [[ "${PREFLIGHT:-1}" == 1 ]]; then
  WORLD_SIZE=$((NNODES * NPROC_PER_NODE)) LOCAL_RANK=0 "${PYTHON}" "${RUN_ARGS[@]}" \
    --preflight-only || exit $?
fi
exec "${CMD[@]}"
