"""tools/bench_checkpoint.py times the training loop's own save and load in each format."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers.torchrun import ENV, ROOT

pytestmark = [pytest.mark.dist]


def test_bench_checkpoint_times_both_formats(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "tools.bench_checkpoint", "--mock-data", "--num-layers", "2",
         "--hidden-size", "64", "--num-attention-heads", "4", "--seq-length", "128",
         "--global-batch-size", "2", "--train-iters", "1", "--dir", str(tmp_path / "ck"),
         "--iters", "1", "--json"],
        capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(out["formats"]) == {"torch", "torch_dist"}
    for fig in out["formats"].values():
        assert fig["save_s"] > 0 and fig["load_s"] > 0 and fig["bytes"] > out["params"] * 4
    assert not (tmp_path / "ck").exists()  # the scratch directory is removed


def test_bench_checkpoint_refuses_an_unknown_format(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tools.bench_checkpoint", "--dir",
                           str(tmp_path), "--formats", "zarr"], capture_output=True, text=True,
                          env=ENV, cwd=ROOT, timeout=120)
    assert proc.returncode == 2 and "'zarr' is not one of torch_dist, torch" in proc.stderr
