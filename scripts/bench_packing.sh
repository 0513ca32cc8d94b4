#!/usr/bin/env bash
# The packing benchmark: every packer's balance and delay on the shipped length samples.
# The packing benchmark: both length samples, N = 4 and 16, 128K context,
# W = d^2/49408 + d (LLaMA-7B FLOP ratio), S_max = 1.25 x context, 300 batches, every packer.
# Writes reports/bench_packing/results.json; PUBLISH=1 records it as docs/results/packing.json
# (with this machine and commit) and refreshes docs/benchmarks.md. Extra arguments go to
# tools/simulate_packing.py.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_help.sh"
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
cd "${ROOT}"
OUT="${OUT_DIR:-${ROOT}/reports/bench_packing}"
mkdir -p "${OUT}"
: > "${OUT}/runs.jsonl"
for data in doc_lengths_wlbllm doc_lengths_prolong; do
  for n in 4 16; do
    echo "== ${data}.json  N=${n}"
    "${VPY}" -m tools.simulate_packing --doc-lengths "data/doc_lengths/${data}.json" \
      --context-length 131072 --num-microbatches "${n}" --packer all \
      --attn-coef "$(python3 -c 'print(1/49408)')" --linear-coef 1 --num-batches 300 --json "$@" \
      | tee "${OUT}/${data}_${n}.jsonl"
    "${VPY}" -c 'import json, sys; print(json.dumps({"data": sys.argv[1].removeprefix("doc_lengths_"),
      "num_microbatches": int(sys.argv[2]),
      "packers": [json.loads(x) for x in open(sys.argv[3]) if x.strip()]}))' \
      "${data}" "${n}" "${OUT}/${data}_${n}.jsonl" >> "${OUT}/runs.jsonl"
  done
done
"${VPY}" -c 'import json, sys; json.dump({"runs": [json.loads(x) for x in open(sys.argv[1])]},
  open(sys.argv[2], "w"), indent=1)' "${OUT}/runs.jsonl" "${OUT}/results.json"
echo "[bench_packing] figures: ${OUT}/results.json"
if [[ -n "${PUBLISH:-}" ]]; then
  "${VPY}" -m tools.bench_results publish packing "${OUT}/results.json" \
    --command "PUBLISH=1 bash scripts/bench_packing.sh $*"
fi
