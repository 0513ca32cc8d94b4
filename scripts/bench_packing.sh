#!/usr/bin/env bash
# The packing benchmark of issue 2: both length samples, N = 4 and 16, 128K context,
# W = d^2/49408 + d (LLaMA-7B FLOP ratio), S_max = 1.25 x context, 300 batches.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
cd "${ROOT}"
for data in doc_lengths_wlbllm doc_lengths_prolong; do
  for n in 4 16; do
    echo "== ${data}.json  N=${n}"
    "${VPY}" -m tools.simulate_packing --doc-lengths "data/doc_lengths/${data}.json" \
      --context-length 131072 --num-microbatches "${n}" --packer all \
      --attn-coef "$(python3 -c 'print(1/49408)')" --linear-coef 1 --num-batches 300 "$@"
  done
done
