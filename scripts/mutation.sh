#!/usr/bin/env bash
# Mutation testing of the pure core: how many deliberately broken versions the tests catch.
# Mutation testing of the pure core -- wlb/packing/, wlb/cp/shard.py, wlb/cp/selector.py,
# wlb/cost_model.py, wlb/metrics.py -- against their fast unit tests (mutmut; the scope and the
# tests are [tool.mutmut] in pyproject.toml). Prints the score per module; not part of .ci/run
# (about 25 minutes on 2 cores). Extra arguments go to `mutmut run` (e.g. "wlb.metrics*").
#   bash scripts/mutation.sh                 # everything
#   OUT=docs/mutation.json bash scripts/mutation.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_help.sh"
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
cd "${ROOT}"
"${VPY}" -m pip install -q -r requirements-dev.txt 2>&1 | grep -v "^WARNING: Location" || true
mkdir -p mutants
echo "[mutation] mutmut run (log: mutants/run.log)"
"${VPY}" -m mutmut run --max-children "${JOBS:-$(nproc)}" "$@" > mutants/run.log 2>&1 || true
"${VPY}" -m tests.helpers.mutation_report ${OUT:+--json "${OUT}"}
