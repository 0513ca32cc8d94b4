# Sourced by the set-up scripts: create or reuse .venv at the repo root and install requirements.
# Re-installs only when requirements.txt changed since the last successful install.
# Python >= 3.12 (megatron-core 0.19 needs it): $PYTHON, else python3.12 on PATH, else pyenv's
# newest 3.12, else python3 / python3.13 if >= 3.12; a .venv of an older Python is made again.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${WLB_VENV:-${ROOT}/.venv}"
_py_ok() {  # _py_ok EXE: EXE runs and is Python >= 3.12
  "$1" -c 'import sys; sys.exit(sys.version_info < (3, 12))' > /dev/null 2>&1
}
_find_python() {  # Python 3.12 first (what the project is tested with), then a newer one
  local c
  for c in ${PYTHON:+"${PYTHON}"} python3.12; do
    if _py_ok "${c}"; then echo "${c}"; return 0; fi
  done
  if command -v pyenv > /dev/null 2>&1; then
    for c in $(ls -d "$(pyenv root)"/versions/3.12.* 2>/dev/null | sort -V -r); do
      if _py_ok "${c}/bin/python3"; then echo "${c}/bin/python3"; return 0; fi
    done
  fi
  for c in python3 python3.13; do
    if _py_ok "${c}"; then echo "${c}"; return 0; fi
  done
  return 1
}
if [[ -x "${VENV}/bin/python" ]] && ! _py_ok "${VENV}/bin/python"; then
  echo "[setup] ${VENV} has Python $("${VENV}/bin/python" -c 'import platform
print(platform.python_version())'); making it again with Python >= 3.12"
  rm -rf "${VENV}"
fi
if [[ ! -x "${VENV}/bin/python" ]]; then
  PY="$(_find_python)" || {
    echo "[setup] no Python >= 3.12 found (tried \$PYTHON, python3.12, pyenv, python3," \
         "python3.13): install Python 3.12 (e.g. 'pyenv install 3.12' or 'apt install python3.12" \
         "python3.12-venv') or set PYTHON=/path/to/python3.12" >&2
    exit 1
  }
  echo "[setup] creating ${VENV} with $("${PY}" -c 'import sys; print(sys.executable)')"
  "${PY}" -m venv "${VENV}"
fi
STAMP="${VENV}/.wlb-requirements.sha"
WANT="$(sha256sum "${ROOT}/requirements.txt" | cut -d' ' -f1)"
if [[ "$(cat "${STAMP}" 2>/dev/null)" != "${WANT}" ]]; then
  echo "[setup] installing requirements into ${VENV} (first run: a minute or two; log:" \
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
