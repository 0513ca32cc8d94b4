"""tools/calibrate_cost_model.py writes one JSON: cost model, fit, samples, attention table."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

from wlb.cost_model import CostModel
from wlb.cp.selector import KernelTable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_calibration_file_feeds_cost_model_selector_and_simulator(tmp_path):
    out = tmp_path / "cal.json"
    proc = subprocess.run(
        [sys.executable, "-m", "tools.calibrate_cost_model", "--out", str(out), "--mock-data",
         "--mock-num-docs", "50", "--seq-length", "1024", "--num-layers", "1", "--hidden-size",
         "32", "--num-attention-heads", "2", "--position-embedding-type", "rope", "--repeats",
         "1", "--data-cache-path", str(tmp_path / "cache")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "MASTER_PORT": "29641", "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    cost = CostModel.from_json(str(out))
    # normalised by the linear coefficient (or by the quadratic one when a tiny, noisy sweep
    # fits no linear part)
    assert 1.0 in (cost.linear_coef, cost.attn_coef) and math.isfinite(cost.attn_coef)
    assert data["step_ms"] > 0 and data["fit_ms"]["linear_ms_per_token"] >= 0
    assert data["device"] == "cpu"  # a GPU's name on a GPU
    assert {tuple(s["doc_lens"]) for s in data["samples"]} >= {(1, 128), (1, 256)}
    from wlb.cost_model import kernel_revision
    from wlb.cp.torch_kernel import REVISION
    from wlb.host.build import stale_calibration

    assert kernel_revision(out) == REVISION and stale_calibration(str(out), "torch") == []
    table = data["kernel_table"]
    assert table["heads"] == 2 and table["head_dim"] == 16 and max(table["q_lens"]) <= 1024
    kt = KernelTable.from_json(str(out))  # the selector reads the table inside the file
    assert kt.segment_us(64, 256) > 0


def test_attention_only_writes_the_selectors_table_of_the_models_heads(tmp_path):
    """--attention-only: no model built, the table alone (a --wlb-kernel-table file)."""
    out = tmp_path / "table.json"
    proc = subprocess.run(
        [sys.executable, "-m", "tools.calibrate_cost_model", "--attention-only", "--out",
         str(out), "--seq-length", "512", "--num-layers", "1", "--hidden-size", "48",
         "--num-attention-heads", "3", "--repeats", "1", "--data-cache-path",
         str(tmp_path / "cache")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["heads"] == 3 and data["head_dim"] == 16 and max(data["q_lens"]) <= 512
    assert "kernel_table" not in data and "--attention-only" in data["command"]
    assert KernelTable.from_json(str(out)).segment_us(64, 256) > 0
