#!/usr/bin/env bash
# The host-path benchmark: one rank's per-iteration WLB host work at three cluster layouts.
# Plan, CP strategies, collate + shard and predictions, timed on the paper's 7B-128K and
# 70B-128K layouts and an 8,192-GPU scale-out (the predictions at logged iterations only:
# --log-interval 10), on a real .bin/.idx (20,000 documents with the wlbllm lengths, written by megatron-core's
# IndexedDatasetBuilder), 128K context, --wlb-outlier-thresholds auto; beside the simulator's
# predicted H100 step time of each layout.
#
# For each layout and for its first and last rank: the host work per iteration on the critical
# path (--step-ms 0), the wait with the next inputs made during a stand-in step of twice that
# (at least 50 ms), and the same with --wlb-elastic-cp. BEFORE=DIR also times another checkout
# (a git worktree of a commit with this tools/bench_data_path.py, whose flags are Megatron-LM's:
# commits before the move into Megatron-LM's loop take the old loop's) for a before/after table.
# Writes reports/bench_host/results.json; PUBLISH=1 records it as
# docs/results/host_path.json and refreshes docs/benchmarks.md. ITERS (default 10) iterations.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_help.sh"
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
cd "${ROOT}"
OUT="${OUT_DIR:-${ROOT}/reports/bench_host}"
CORPUS="${CORPUS:-${ROOT}/reports/bench_host/corpus/wlbllm20k}"
ITERS="${ITERS:-10}"
mkdir -p "${OUT}" "$(dirname "${CORPUS}")"
if [[ ! -f "${CORPUS}.idx" ]]; then
  echo "[bench_host] writing ${CORPUS}.bin/.idx (20,000 documents, wlbllm lengths)"
  "${VPY}" -c 'import json, sys, numpy as np
from wlb.megatron.indexed import write_documents
sample = np.asarray(json.load(open("data/doc_lengths/doc_lengths_wlbllm.json")))
rng = np.random.default_rng(0)
lens = np.maximum(rng.choice(sample, 20000), 2)
write_documents(sys.argv[1], (rng.integers(0, 31999, int(n) - 1) for n in lens),
                vocab_size=32000, eod=31999, tokenizer="NullTokenizer")' "${CORPUS}"
fi
# Megatron-LM's command line (tools/bench_data_path.py parses it with Megatron-LM's parser)
DATA=(--data-path "${CORPUS}" --tokenizer-type NullTokenizer --vocab-size 32000
      --seq-length 131072 --max-position-embeddings 131072 --micro-batch-size 1
      --train-iters 1000 --lr 3e-4 --eval-interval 1000 --transformer-impl local
      --attention-dropout 0 --split 100,0,0 --wlb-packing wlb --wlb-cp-sharding adaptive
      --wlb-outlier-thresholds auto --log-interval 10)
# name | world | layout and model flags | simulator flags
LAYOUTS=(
  "7b-128k|64|--tensor-model-parallel-size 8 --context-parallel-size 2 --pipeline-model-parallel-size 4 --num-layers 32 --hidden-size 4096 --num-attention-heads 32 --group-query-attention --num-query-groups 8 --global-batch-size 4|--model 7b --tp 8 --cp 2 --pp 4 --dp 1 --vpp 1"
  "70b-128k|256|--tensor-model-parallel-size 16 --context-parallel-size 4 --pipeline-model-parallel-size 4 --num-layers 80 --hidden-size 8192 --num-attention-heads 64 --group-query-attention --num-query-groups 16 --global-batch-size 4|--model 70b --tp 16 --cp 4 --pp 4 --dp 1 --vpp 1"
  "scale-out-8192|8192|--tensor-model-parallel-size 8 --context-parallel-size 16 --pipeline-model-parallel-size 16 --num-layers 80 --hidden-size 8192 --num-attention-heads 64 --group-query-attention --num-query-groups 8 --global-batch-size 64|--model 70b --tp 8 --cp 16 --pp 16 --dp 4 --vpp 1"
)
bench() {  # bench TREE ARGS...: the JSON line of tools/bench_data_path
  (cd "$1" && shift && PYTHONPATH="$PWD" "${VPY}" -W ignore -m tools.bench_data_path \
     --iters "${ITERS}" --json "$@" | tail -1)
}
: > "${OUT}/rows.jsonl"
rm -f "${CORPUS}".wlb-auto-*.json  # each layout's first start tunes its thresholds
for row in "${LAYOUTS[@]}"; do
  IFS='|' read -r name world flags sim <<< "${row}"
  read -ra F <<< "${flags}"
  echo "== ${name} (${world} ranks)"
  "${VPY}" -m tools.simulate_cluster config ${sim} --context 131072 --iters 8 \
    --systems plain,wlb --json "${OUT}/${name}_sim.json" | tail -2
  # the first start tunes the thresholds and caches them beside the data (timed alone); the
  # timed runs then start as a restart does, so that every one of them is in the same state
  first="$(bench "${ROOT}" --world-size "${world}" --rank 0 "${F[@]}" "${DATA[@]}" --iters 1 \
           --warmup 0)"
  for rank in 0 $((world - 1)); do
    common=(--world-size "${world}" --rank "${rank}" "${F[@]}" "${DATA[@]}")
    serial="$(bench "${ROOT}" "${common[@]}")"
    step="$("${VPY}" -c 'import json, sys; print(max(50.0, 2 * json.loads(sys.argv[1])["iter_ms"]))' "${serial}")"
    overlap="$(bench "${ROOT}" "${common[@]}" --step-ms "${step}")"
    elastic="$(bench "${ROOT}" "${common[@]}" --wlb-elastic-cp)"
    before="null"
    if [[ -n "${BEFORE:-}" ]]; then before="$(bench "${BEFORE}" "${common[@]}")"; fi
    echo "{\"name\": \"${name}\", \"world\": ${world}, \"rank\": ${rank}, \"serial\": ${serial}, \"overlap\": ${overlap}, \"elastic\": ${elastic}, \"before\": ${before}, \"first\": ${first}, \"sim\": \"${OUT}/${name}_sim.json\"}" >> "${OUT}/rows.jsonl"
    "${VPY}" -c 'import json, sys
r = json.loads(sys.argv[1])
s, o, e, b = r["serial"], r["overlap"], r["elastic"], r["before"]
line = "  rank %d: %.1f ms/iter on the critical path; waits %.2f ms with a %.0f ms step; " \
       "elastic %.1f ms" % (r["rank"], s["iter_ms"], o["wait_ms"], o["step_ms"], e["iter_ms"])
print(line + ("; before %.1f ms" % b["iter_ms"] if b else ""))' "$(tail -1 "${OUT}/rows.jsonl")"
  done
done
"${VPY}" -c 'import json, sys
rows = [json.loads(x) for x in open(sys.argv[1])]
for r in rows:
    sim = json.load(open(r.pop("sim")))["results"][0]["systems"]
    r["sim_step_s"] = {k: v["iter_s_mean"] for k, v in sim.items()}
json.dump({"iters": int(sys.argv[3]), "rows": rows}, open(sys.argv[2], "w"), indent=1)' \
  "${OUT}/rows.jsonl" "${OUT}/results.json" "${ITERS}"
echo "[bench_host] figures: ${OUT}/results.json"
if [[ -n "${PUBLISH:-}" ]]; then
  "${VPY}" -m tools.bench_results publish host_path "${OUT}/results.json" \
    --command "${BEFORE:+BEFORE=<worktree of $(git -C "${BEFORE}" rev-parse --short HEAD)> }PUBLISH=1 bash scripts/bench_host.sh"
fi
