#!/usr/bin/env bash
# Run the test suite on CPU (creates/reuses .venv). Extra arguments go to pytest.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_help.sh"
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
cd "${ROOT}"
echo "[tests] ruff"
"${VPY}" -m ruff check .
echo "[tests] pytest"
# GPU tests are skipped without CUDA; pytest exits 5 when nothing was collected, which fails here.
exec "${VPY}" -m pytest -q -m "not gpu" "$@"
