# Sourced by the set-up scripts: create or reuse .venv at the repo root and install requirements.
# Re-installs only when requirements.txt changed since the last successful install.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${WLB_VENV:-${ROOT}/.venv}"
PY="${PYTHON:-python3}"
if [[ ! -x "${VENV}/bin/python" ]]; then
  echo "[setup] creating ${VENV}"
  "${PY}" -m venv "${VENV}"
fi
STAMP="${VENV}/.wlb-requirements.sha"
WANT="$(sha256sum "${ROOT}/requirements.txt" | cut -d' ' -f1)"
if [[ "$(cat "${STAMP}" 2>/dev/null)" != "${WANT}" ]]; then
  echo "[setup] installing requirements into ${VENV} (first run: about a minute; log:" \
       "${VENV}/install.log)"
  "${VENV}/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  "${VENV}/bin/python" -m pip install -q -r "${ROOT}/requirements.txt" > "${VENV}/install.log" 2>&1 \
    || { tail -20 "${VENV}/install.log"; echo "[setup] pip install failed" >&2; exit 1; }
  echo "${WANT}" > "${STAMP}"
fi
# The repository on the venv's import path, so `python tools/NAME.py` finds wlb from anywhere
# (`python -m tools.NAME` from the repository root needs nothing).
PTH="$("${VENV}/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/wlb-repo.pth"
[[ "$(cat "${PTH}" 2>/dev/null)" == "${ROOT}" ]] || echo "${ROOT}" > "${PTH}"
export PYTHONPATH="${ROOT}${PYTHONPATH:+:${PYTHONPATH}}"
VPY="${VENV}/bin/python"
# stale_calibration FILE: true when the cost-model file was calibrated on another revision of
# the torch attention kernel than this build's (wlb.cost_model.kernel_revision)
stale_calibration() {
  "${VPY}" -c 'import sys
from wlb.cost_model import kernel_revision
from wlb.cp.torch_kernel import REVISION
sys.exit(kernel_revision(sys.argv[1]) == REVISION)' "$1"
}
