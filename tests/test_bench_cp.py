"""tools/bench_cp.py: each CP rank's share is timed on that rank's own queries, the slowest rank
per micro-batch is summed, and the one-device and gloo modes both run end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from tools import bench_cp
from wlb.cp import ALL_STRATEGIES, causal_pairs, rank_attention_pairs
from wlb.cp.selector import DEFAULT_TABLE, KernelTable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _pairs_as_seconds(backend, q, k, v, segments, scale, reps):
    """Stand-in timer: a rank's 'time' is its causal pairs, after checking that the queries it
    was given are exactly its segments' queries and the keys reach every segment's last key."""
    assert q.shape[0] == sum(s.length for s in segments)
    assert k.shape == v.shape and k.shape[0] >= max(s.doc_start + s.start + s.length
                                                    for s in segments)
    return float(sum(causal_pairs(s.length, s.start + s.length) for s in segments))


def test_one_device_rows_time_each_rank_share_and_sum_the_slowest(monkeypatch):
    monkeypatch.setattr(bench_cp, "time_fwd_bwd", _pairs_as_seconds)
    mbs = [[300, 20, 20, 172], [512], [100] * 5 + [12]]
    a = SimpleNamespace(device="cpu", dtype="float32", backend="auto", head_dim=8, heads=2,
                        kv_heads=1, reps=1, strategies=ALL_STRATEGIES)
    rows, backend = bench_cp.one_device_rows(mbs, 4, a)
    assert backend == "torch"
    for row, lens in zip(rows, mbs):
        for s in ALL_STRATEGIES:
            assert row[s]["rank_s"] == [float(p) for p in rank_attention_pairs(lens, 4, s)]
    res = bench_cp.summarize(rows, 4, KernelTable.from_json(DEFAULT_TABLE), ALL_STRATEGIES)
    for s in ALL_STRATEGIES:
        slowest = [max(rank_attention_pairs(lens, 4, s)) for lens in mbs]
        assert res[s]["iter_attn_s"] == pytest.approx(sum(slowest))
        assert res[s]["speedup_over_per_seq"] == pytest.approx(
            res["per_seq"]["iter_attn_s"] / res[s]["iter_attn_s"])
        assert res[s]["full_call_wall_s"] is None  # no collective call in this mode
    # one document of 512 is balanced either way; five of 100 are not under per_seq
    assert res["per_doc"]["rank_max_over_mean"] < res["per_seq"]["rank_max_over_mean"]
    ad = res["adaptive"]
    assert ad["oracle_s"] <= ad["iter_attn_s"] <= max(res[s]["iter_attn_s"] for s in
                                                      ("per_seq", "per_doc"))


def _run(*args):
    return subprocess.run([sys.executable, "-m", "tools.bench_cp", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_one_device_run_writes_each_context_and_cp_size(tmp_path):
    out = tmp_path / "cp.json"
    proc = _run("--one-device", "--context-length", "256,512", "--cp-sizes", "2,4",
                "--num-microbatches", "2", "--reps", "1", "--with-mixed", "--heads", "2",
                "--kv-heads", "1", "--head-dim", "16", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["setting"]["device"] == "cpu" and data["setting"]["heads"] == 2
    got = [(r["context"], r["cp"]) for r in data["results"]]
    assert got == [(256, 2), (256, 4), (512, 2), (512, 4)]
    for r in data["results"]:
        assert r["backend"] == "torch" and r["num_microbatches"] == 2
        assert r["per_seq"]["speedup_over_per_seq"] == 1.0
        assert all(r[s]["iter_attn_s"] > 0 for s in ALL_STRATEGIES)
    assert "context 512, CP=4" in proc.stdout and "adaptive incl. mixed" in proc.stdout


def test_out_holds_each_result_as_soon_as_it_is_measured(tmp_path, monkeypatch):
    """A stage stopped at its time limit keeps what it measured: --out is rewritten after every
    (context, CP) result, here when the second CP size fails."""
    monkeypatch.setattr(bench_cp, "time_fwd_bwd", _pairs_as_seconds)
    real = bench_cp.one_device_rows

    def second_fails(mbs, cp, a):
        if cp == 4:
            raise RuntimeError("stopped")
        return real(mbs, cp, a)

    monkeypatch.setattr(bench_cp, "one_device_rows", second_fails)
    out = tmp_path / "cp.json"
    with pytest.raises(RuntimeError, match="stopped"):
        bench_cp.main(["--one-device", "--context-length", "256", "--cp-sizes", "2,4",
                       "--num-microbatches", "2", "--out", str(out)])
    data = json.loads(out.read_text())
    assert [(r["context"], r["cp"]) for r in data["results"]] == [(256, 2)]
    assert data["setting"]["command"].endswith(f"--out {out}")


@pytest.mark.dist
def test_gloo_run_also_times_the_full_cp_call():
    proc = _run("--context-length", "128", "--cp-sizes", "2", "--num-microbatches", "1",
                "--reps", "1", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(proc.stdout.splitlines()[-1])
    assert r["cp"] == 2 and r["per_doc"]["full_call_wall_s"] > 0


@pytest.mark.parametrize("args, says", [
    (["--one-device", "--device", "cuda"], "--device cuda: no CUDA device here"),
    (["--cp-sizes", "2,x"], "comma lists of integers"),
    (["--cp-sizes", "4", "--context-length", "6"], "CP=4 at context 6 needs"),
    (["--dtype", "bfloat16"], "need --one-device"),
])
def test_bad_input_is_one_line(args, says):
    if "cuda" in args and torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    proc = _run(*args)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and proc.stdout == "" and len(lines) == 1
    assert lines[0].startswith("bench_cp.py: error: ") and says in lines[0]
