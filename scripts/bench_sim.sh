#!/usr/bin/env bash
# The cluster simulator on the paper's grid: Plain-4D vs Fixed-4D vs WLB at cluster scale.
# The cluster simulator on the paper's Table 1 grid (assumed H100 profile, 64 iterations per
# system; ~1 minute here). Writes reports/bench_sim/grid.json; PUBLISH=1 records it as
# docs/results/sim_grid.json (with this machine and commit) and refreshes docs/benchmarks.md.
# Extra arguments go to `tools/simulate_cluster.py grid` (e.g. --comm-exposed 1.0).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_help.sh"
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
cd "${ROOT}"
OUT="${OUT_DIR:-${ROOT}/reports/bench_sim}"
mkdir -p "${OUT}"
"${VPY}" -m tools.simulate_cluster grid --iters "${ITERS:-64}" --json "${OUT}/grid.json" "$@"
if [[ -n "${PUBLISH:-}" ]]; then
  "${VPY}" -m tools.bench_results publish sim_grid "${OUT}/grid.json" \
    --command "PUBLISH=1 bash scripts/bench_sim.sh $*"
fi
