"""scripts/gpu_check.sh, the one prepared run for a lent GPU: every stage runs at toy sizes on
the CPU (DEVICE=cpu) and writes its file; a failed or timed-out stage does not stop the others,
and the exit status counts them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "gpu_check.sh")


def _run(tmp_path, **env):
    return subprocess.run(["bash", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "OUT_DIR": str(tmp_path), "PYTHON": sys.executable,
                               "OMP_NUM_THREADS": "1", **env})


@pytest.mark.slow
@pytest.mark.dist
def test_every_stage_runs_at_toy_sizes_on_the_cpu(tmp_path):
    proc = _run(tmp_path, DEVICE="cpu", ITERS="2")
    log = (tmp_path / "gpu_check.log").read_text()
    assert proc.returncode == 0, log[-4000:]
    assert "stages failed: none" in log and "megatron.core yes" in log
    for mode in ("baseline", "wlb"):  # stage 2: stock then WLB in Megatron-LM's loop
        recs = [json.loads(x) for x in (tmp_path / f"{mode}.jsonl").read_text().splitlines()]
        assert [r["iteration"] for r in recs] == [1, 2] and all(r["lm_loss"] > 0 for r in recs)
    cal = json.loads((tmp_path / "calibration_7b.json").read_text())  # stage 3
    assert cal["model"]["num_query_groups"] == 2 and cal["kernel_table"]["kv_heads"] == 2
    bench = json.loads((tmp_path / "cp_bench.json").read_text())  # stage 4, stage 3's table
    assert [(r["context"], r["cp"]) for r in bench["results"]] == [(256, 2), (256, 4), (512, 2),
                                                                    (512, 4)]
    assert bench["setting"]["table"] == str(tmp_path / "calibration_7b.json")
    assert sorted(os.listdir(tmp_path)) == ["baseline.jsonl", "calibration_7b.json",
                                            "cp_bench.json", "gpu_check.log", "wlb.jsonl"]


def test_a_failed_stage_does_not_stop_the_next_and_is_counted(tmp_path):
    proc = _run(tmp_path, PYTHON="false", STAGES="1 4")
    log = (tmp_path / "gpu_check.log").read_text()
    assert proc.returncode == 2, log
    assert "== stage 1: exit 1" in log and "== stage 4: exit 1" in log
    assert "stages failed: 1 4" in log and "== stage 2" not in log


def test_a_stage_past_the_budget_is_skipped_and_counted(tmp_path):
    proc = _run(tmp_path, PYTHON="false", STAGES="3", BUDGET_S="10")
    log = (tmp_path / "gpu_check.log").read_text()
    assert proc.returncode == 1 and "== stage 3: skipped" in log and "false -m" not in log
