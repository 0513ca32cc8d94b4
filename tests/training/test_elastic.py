"""Elastic CP trains the same step: the same global batch, with each slot's pieces regrouped
over the DP x CP pool, gives the 1-process loss and gradients."""

from __future__ import annotations

import warnings

import pytest
import torch

from tests.helpers.dist import run_distributed
from tests.training.test_equivalence import _config, _grads, _layouts
from wlb.packing.types import BatchPlan

pytestmark = [pytest.mark.dist, pytest.mark.slow]


def _worker(rank, world, extra, out_path):
    warnings.filterwarnings("ignore")
    from wlb.training.loop import train_step
    from wlb.training.setup import build

    run = build(_config(extra))
    mbs = _layouts(run.schedule.batcher.lengths, run.cost)["wlb"]
    dp = run.groups.layout.dp
    out = []
    for it in range(2):  # two steps: the second starts from the first's update
        m = train_step(run, BatchPlan(it, mbs, [j % dp for j in range(len(mbs))]))
        out.append((m["lm_loss"], _grads(run), m.get("elastic_group_sizes"),
                    m.get("elastic_speedup_pred")))
    if rank == 0:
        torch.save(out, out_path)


def _run(tmp_path, world, extra):
    path = tmp_path / f"{world}_{'_'.join(extra)}.pt"
    run_distributed(_worker, world, extra, str(path))
    return torch.load(path, weights_only=False)


@pytest.mark.parametrize("world,extra", [
    (2, []),  # DP = 2: the pool is two replicas
    (2, ["--context-parallel-size", "2"]),  # CP = 2: the pool is one CP group
    (4, ["--context-parallel-size", "2"]),  # DP = 2 x CP = 2
    (4, ["--pipeline-model-parallel-size", "2"]),  # DP = 2 x PP = 2
    (4, ["--pipeline-model-parallel-size", "2", "--num-layers-per-virtual-pipeline-stage",
         "1"]),  # DP = 2 x PP = 2, interleaved (VPP = 2)
    (4, ["--tensor-model-parallel-size", "2", "--sequence-parallel"]),  # DP = 2 x TP = 2, SP
])
def test_elastic_cp_gives_the_one_process_loss_and_gradients(tmp_path, world, extra):
    ref = _run(tmp_path, 1, [])
    got = _run(tmp_path, world, [*extra, "--wlb-elastic-cp"])
    for (loss, grad, _, _), (rloss, rgrad, _, _) in zip(got, ref):
        assert loss == pytest.approx(rloss, abs=1e-5)  # step 2's loss checks step 1's update
        sharded = {"--pipeline-model-parallel-size", "--tensor-model-parallel-size"} & set(extra)
        if not sharded:  # (else rank 0 holds one stage's, or one TP shard's, parameters)
            torch.testing.assert_close(grad, rgrad, rtol=1e-4, atol=1e-6 * rgrad.abs().max())
    sizes, speedup = got[0][2], got[0][3]
    assert sizes and speedup >= 1.0  # never predicted slower than the fixed layout


def test_a_run_with_elastic_cp_logs_its_plan_and_resumes_exactly(tmp_path):
    from tests.helpers.torchrun import TINY, WLB, run_pretrain

    flags = [f for f in TINY if f not in ("--train-iters", "3")] + WLB + [
        "--wlb-elastic-cp", "--train-iters", "4"]
    full = run_pretrain(2, flags, str(tmp_path / "full.jsonl"))
    assert all(len(r["elastic_digest"]) == 16 and r["elastic_speedup_pred"] >= 1.0
               for r in full)
    ck = str(tmp_path / "ck")
    run_pretrain(2, flags + ["--exit-interval", "2", "--save", ck], str(tmp_path / "a.jsonl"))
    second = run_pretrain(2, flags + ["--load", ck], str(tmp_path / "b.jsonl"))
    assert [r["iteration"] for r in second] == [3, 4]
    for a, b in zip(full[2:], second):
        assert (a["lm_loss"], a["elastic_digest"]) == (b["lm_loss"], b["elastic_digest"])


def test_elastic_cp_without_a_pool_is_one_line():
    from tests.helpers.torchrun import TINY, launch_pretrain

    proc = launch_pretrain(TINY + ["--wlb-elastic-cp", "--preflight-only"])
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "pretrain_gpt_wlb.py: error: --wlb-elastic-cp needs DP x CP > 1 ranks per pipeline "
        "stage to regroup; this layout has DP=1 x CP=1"]
