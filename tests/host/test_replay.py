"""simulate_cluster.py validate: a real run's plans are rebuilt from its flags and simulated."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers.torchrun import ENV, ROOT, TINY, WLB, run_pretrain

pytestmark = pytest.mark.dist

CAL = {"attn_coef": 0.01, "linear_coef": 1.0, "doc_coef": 50.0, "step_ms": 5.0,
       "fit_ms": {"attn_ms_per_d2": 1e-5, "linear_ms_per_token": 1e-3, "doc_ms": 0.1,
                  "microbatch_ms": 2.0}}


def _validate(cal, log, flags, *extra):
    return subprocess.run(
        [sys.executable, "-m", "tools.simulate_cluster", "validate", "--calibration", str(cal),
         "--log", str(log), "--nproc", "2", *extra, "--", *flags],
        cwd=ROOT, capture_output=True, text=True, env=ENV, timeout=120)


def test_replay_matches_plan_digests_and_predicts_each_iteration(tmp_path):
    flags = [*TINY, *WLB, "--pipeline-model-parallel-size", "2"]
    log = tmp_path / "run.jsonl"
    rows = run_pretrain(2, flags, str(log))
    cal = tmp_path / "cal.json"
    cal.write_text(json.dumps(CAL))
    out = _validate(cal, log, flags, "--skip", "0", "--json", str(tmp_path / "v.json"))
    assert out.returncode == 0, out.stderr[-2000:]
    (result,) = json.loads((tmp_path / "v.json").read_text())
    assert result["iterations"] == len(rows)
    assert result["measured_ms"] == [r["iter_ms"] for r in rows]  # the run's own rows, in order
    measured, predicted = result["measured_ms"], result["predicted_ms"]
    # the reported errors are those of the two series
    assert result["mean_error"] == pytest.approx(sum(predicted) / sum(measured) - 1)
    assert result["per_iter_abs_error_mean"] == pytest.approx(
        sum(abs(p / m - 1) for p, m in zip(predicted, measured)) / len(measured))
    # the prediction follows each iteration's plan, and the calibration: twice as slow a machine
    # (every fitted time doubled) is predicted slower on every iteration
    assert len(set(predicted)) == len(predicted)
    slow = dict(CAL, step_ms=2 * CAL["step_ms"],
                fit_ms={k: 2 * v for k, v in CAL["fit_ms"].items()})
    cal.write_text(json.dumps(slow))
    out = _validate(cal, log, flags, "--skip", "0", "--json", str(tmp_path / "v2.json"))
    assert out.returncode == 0, out.stderr[-2000:]
    (result2,) = json.loads((tmp_path / "v2.json").read_text())
    assert all(b > 1.5 * a for a, b in zip(predicted, result2["predicted_ms"]))
    # the logged floor: no packing of the same pieces does better than it
    assert all(1.0 <= r["pp_imbalance_floor"] <= r["pp_imbalance_pred"] + 1e-9 for r in rows)
    assert all(r["dp_imbalance_pred"] == 1.0 for r in rows)  # DP=1: one replica
    assert all(p > 0 for p in result["predicted_ms"])
    assert result["strategies"] == {"per_seq": len(rows) * 8}  # CP=1: one layout
    # other flags give other plans: refused, naming the iteration
    bad = _validate(cal, log, [*TINY, "--wlb-packing", "megatron", "--pipeline-model-parallel-size",
                               "2"])
    assert bad.returncode != 0 and "plan digest" in bad.stderr
