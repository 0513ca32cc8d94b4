# Sourced by the launchers: the Megatron-LM flag groups they share (bash arrays).
#   LLAMA_ARGS     LLaMA-style layers (RMSNorm, SwiGLU, no linear biases, RoPE, no dropout), as the
#                  paper's models; Megatron-LM's defaults are GPT-2's
#   DEVICE_ARGS    DEVICE=cpu|gpu (default: gpu where nvidia-smi lists one). cpu: megatron's local
#                  layers with gloo and its CUDA fusions off, --no-bias-swiglu-fusion among them
#                  (on the CPU megatron compiles it with torch.compile, which recompiles for every
#                  new micro-batch length; wlb/megatron/replica.py's CPU_FLAGS, a test keeps
#                  them equal); gpu: nccl, TransformerEngine's layers where it imports
#                  (WLB's attention in their core_attention slot), else megatron's local ones;
#                  TRANSFORMER_IMPL=local|transformer_engine chooses. Megatron-LM's fusion
#                  defaults that need a CUDA extension this machine lacks are turned off (no TE:
#                  --no-rope-fusion; no apex: --no-gradient-accumulation-fusion and
#                  --no-masked-softmax-fusion), else megatron stops at the model's build
#   STOCK_ARGS     stock Megatron, document-masked as the paper's baseline
LLAMA_ARGS=(--normalization RMSNorm --swiglu --disable-bias-linear --position-embedding-type rope
            --hidden-dropout 0 --attention-dropout 0 --init-method-std 0.02)
STOCK_ARGS=(--wlb-packing megatron --dataloader-inter-document-masking)
if [[ -z "${DEVICE:-}" ]]; then
  DEVICE=cpu
  command -v nvidia-smi > /dev/null 2>&1 && nvidia-smi -L > /dev/null 2>&1 && DEVICE=gpu
fi
case "${DEVICE}" in
  cpu) DEVICE_ARGS=(--transformer-impl local --distributed-backend gloo --no-persist-layer-norm
                    --no-gradient-accumulation-fusion --no-masked-softmax-fusion
                    --no-bias-gelu-fusion --no-bias-swiglu-fusion --no-bias-dropout-fusion
                    --no-rope-fusion --threads "${THREADS:-1}") ;;
  gpu) _importable() { "${PYTHON:-python}" -c "import $1" > /dev/null 2>&1; }
       HAVE_TE=0
       _importable transformer_engine && HAVE_TE=1
       if [[ -z "${TRANSFORMER_IMPL:-}" ]]; then
         TRANSFORMER_IMPL=local
         (( HAVE_TE )) && TRANSFORMER_IMPL=transformer_engine
       fi
       DEVICE_ARGS=(--transformer-impl "${TRANSFORMER_IMPL}" --distributed-backend nccl)
       (( HAVE_TE )) || DEVICE_ARGS+=(--no-rope-fusion)
       _importable fused_weight_gradient_mlp_cuda \
         || DEVICE_ARGS+=(--no-gradient-accumulation-fusion)
       _importable scaled_masked_softmax_cuda || DEVICE_ARGS+=(--no-masked-softmax-fusion) ;;
  *) echo "$(basename "$0"): DEVICE=${DEVICE} unknown; choose cpu or gpu" >&2; exit 2 ;;
esac
