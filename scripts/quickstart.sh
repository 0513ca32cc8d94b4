#!/usr/bin/env bash
# The main job. Until the training integration lands (issue 4), it compares the packers on the
# shipped document-length sample: stock Megatron packing, Fixed-4D greedy, the paper's
# Algorithm 1 and our WLB packer, at a 128K context with N = 4 micro-batches per iteration.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
cd "${ROOT}"
DATA="${DATA:-${ROOT}/data/doc_lengths/doc_lengths_wlbllm.json}"
CONTEXT="${CONTEXT:-131072}"
N="${N:-4}"
OUT="${OUT_DIR:-${ROOT}/reports/quickstart}"
mkdir -p "${OUT}"
"${VPY}" tools/simulate_packing.py \
  --doc-lengths "${DATA}" --context-length "${CONTEXT}" --num-microbatches "${N}" \
  --packer megatron,fixed-greedy,wlb-paper,wlb --num-batches "${NUM_BATCHES:-300}" \
  --reference-gap 10 --plot "${OUT}/imbalance.png" "$@"
echo "[quickstart] per-batch imbalance plot: ${OUT}/imbalance.png"
