"""megatron's distributed optimizer across a resume, and turned on or off through the conversion
step (``--wlb-convert-optimizer-save``, wlb.megatron.convert).

One chain on WLB's packing, each leg's losses its ``--log-json`` rows (every iteration's own,
at full precision), compared with the uninterrupted run's at DP 2 with the distributed
optimizer (``--dist-ckpt-optim-fully-reshardable``, saved after iterations 2 and 4; the plain
optimizer trains the same, measured):

1. resumed after iteration 2 at TP 2: megatron reshards it (on the CPU through ``cpu_loop``'s
   ``adam_step`` and ``fp32_shards``: torch's Adam, fp32); within 1e-5 relative (another
   layout; bit-equal on this project's VM; without the shared-step fix 4.5e-5 off, without the
   others no load at all);
2. converted on one process to the plain optimizer; that checkpoint converted back to the
   distributed one (saved at DP 1, megatron's default ``dp_reshardable`` layout) and resumed at
   DP 2: iterations 3 and 4 are the uninterrupted run's bit for bit (the same layout on the
   same machine), so both conversions kept the weights, Adam's moments and step, and the
   learning rate.

A conversion to the kind the checkpoint already holds, or on more than TP x PP processes, is one
line before any work.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers.lm_runs import COMMON, ENTRY, assert_same_losses, json_losses, lm_output
from tests.helpers.torchrun import ENV, ROOT

pytestmark = [pytest.mark.dist, pytest.mark.slow]
WLB = ["--wlb-packing", "wlb", "--micro-batch-size", "1", "--eod-mask-loss", "--train-iters", "4",
       "--wlb-cp-sharding", "per-doc"]
DIST = ["--use-distributed-optimizer"]
REL = 1e-5


def _entry(flags: list[str], corpus: str, cache: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *ENTRY, "--data-path", corpus, *COMMON, *flags,
                           "--data-cache-path", cache], capture_output=True, text=True,
                          cwd=ROOT, env=ENV, timeout=120)


def _losses(tmp_path, name: str, nproc: int, flags: list[str], corpus, cache) -> dict:
    log = str(tmp_path / f"{name}.jsonl")
    lm_output(ENTRY, nproc, [*WLB, *flags, "--log-json", log], corpus, cache)
    return json_losses(log)


def test_the_distributed_optimizer_resumes_resharded_and_converts_both_ways(
        corpus, data_cache, tmp_path):
    ck = {k: str(tmp_path / k) for k in ("dist", "plain", "back")}
    full = _losses(tmp_path, "full", 2, [*DIST, "--dist-ckpt-optim-fully-reshardable",
                                         "--save", ck["dist"], "--save-interval", "2"],
                   corpus, data_cache)  # (saved after iterations 2 and 4)
    assert sorted(full) == [1, 2, 3, 4]
    at2 = ["--ckpt-step", "2"]
    tp2 = _losses(tmp_path, "tp2", 2, [*DIST, "--tensor-model-parallel-size", "2",
                                       "--load", ck["dist"], *at2], corpus, data_cache)
    # another layout sums in another order: within REL, as the other layout-changing resumes
    assert_same_losses([(i, full[i]) for i in (3, 4)], sorted(tp2.items()), REL,
                       "distributed optimizer resumed at TP 2", (3, 4))

    out = lm_output(ENTRY, 1, [*WLB, "--load", ck["dist"], *at2,
                               "--wlb-convert-optimizer-save", ck["plain"]], corpus, data_cache)
    assert "from the distributed optimizer to the plain optimizer" in out
    again = _entry([*WLB, "--load", ck["plain"], "--wlb-convert-optimizer-save", ck["back"]],
                   corpus, data_cache)  # (to the plain optimizer again)
    assert again.returncode == 2 and again.stderr.strip().endswith(
        "already holds the plain optimizer's state: nothing to convert (give "
        "--use-distributed-optimizer for the kind to convert to)"), again.stderr[-2000:]
    lm_output(ENTRY, 1, [*WLB, *DIST, "--load", ck["plain"], "--wlb-convert-optimizer-save",
                         ck["back"]], corpus, data_cache)
    back = _losses(tmp_path, "back", 2, [*DIST, "--load", ck["back"]], corpus, data_cache)
    assert back == {i: full[i] for i in (3, 4)}, "converted there and back, resumed at DP 2"


def test_a_conversion_on_more_than_tp_x_pp_processes_is_one_line(tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           *ENTRY, "--mock-data", *COMMON, *WLB, *DIST, "--load", str(tmp_path),
           "--wlb-convert-optimizer-save", str(tmp_path / "out")]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=120)
    errors = [ln for ln in proc.stderr.splitlines() if "error:" in ln]
    assert proc.returncode != 0 and len(errors) == 1, proc.stderr[-2000:]
    assert "runs at data- and context-parallel size 1 (got DP=2, CP=1)" in errors[0]
