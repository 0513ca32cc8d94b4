"""tools/calibrate_comm.py: the line fit by hand, and a 2-process run that prices the all-gather
into a cost-model file."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers.torchrun import ENV, ROOT
from tools.calibrate_comm import fit_line


def test_fit_line():
    assert fit_line([0, 1, 2], [1.0, 3.0, 5.0]) == pytest.approx((1.0, 2.0))
    assert fit_line([0, 1, 2], [5.0, 3.0, 1.0]) == (3.0, 0.0)  # no negative slope
    assert fit_line([4, 4], [2.0, 4.0]) == (3.0, 0.0)  # one x: the mean, no slope


def _cost_file(tmp_path, **extra):
    path = tmp_path / "cost.json"
    path.write_text(json.dumps({"attn_coef": 0.01, "linear_coef": 1.0, "doc_coef": 0.0,
                                **extra}))
    return path


def _run(args, nproc):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={nproc}", "-m", "tools.calibrate_comm", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=120)


@pytest.mark.dist
def test_two_processes_write_the_prices_in_cost_model_units(tmp_path):
    path = _cost_file(tmp_path, fit_ms={"linear_ms_per_token": 0.5},
                      model={"num_layers": 2, "hidden_size": 64, "num_attention_heads": 4,
                             "num_query_groups": 2})
    proc = _run(["--cost-model", str(path), "--tokens", "64,256,1024", "--repeats", "2",
                 "--split-lengths", "128;384,64,32"], 2)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(path.read_text())
    fit = data["elastic_comm_fit_ms"]
    assert fit["ranks"] == 2 and fit["per_token_received"] >= 0 and fit["per_microbatch"] >= 0
    assert data["elastic_comm_coef"] == pytest.approx(fit["per_token_received"] / 0.5)
    assert data["elastic_comm_fixed"] == pytest.approx(fit["per_microbatch"] / 0.5)
    assert data["attn_coef"] == 0.01  # the cost model itself is kept
    assert proc.stdout.count("[calibrate_comm] 2 ranks") == 3
    split = data["elastic_split_fit"]
    assert split["lengths"] == [[128], [384, 64, 32]] and split["ranks"] == 2
    assert split["efficiency"] == pytest.approx(
        [w / (2 * s) for w, s in zip(split["whole_ms"], split["split_ms"])])
    assert data["elastic_split_efficiency"] == min(sum(split["efficiency"]) / 2, 1.0) > 0


def test_an_uncalibrated_file_is_one_line(tmp_path):
    path = _cost_file(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "tools.calibrate_comm", "--cost-model",
                           str(path)], capture_output=True, text=True, env=ENV, cwd=ROOT)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"calibrate_comm: {path} has no fit_ms.linear_ms_per_token or model entry; write it "
        "with tools/calibrate_cost_model.py first"]


def test_sample_batches_hold_one_long_document_among_drawn_ones(tmp_path):
    from tools.calibrate_comm import sample_batches

    path = tmp_path / "lengths.json"
    path.write_text(json.dumps([100] * 99 + [3000]))
    assert sample_batches(str(path), 1.0, 4000, n=2) == [(3000,) + (100,) * 10] * 2
    assert sample_batches(str(path), 0.5, 2000, n=1) == [(1500,) + (50,) * 10]
