"""Elastic CP trains the same step: the same global batch, with each slot's pieces regrouped
over the DP x CP pool, gives the 1-process loss and gradients."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from tests.helpers.dist import run_distributed
from tests.training.test_equivalence import _config, _grads, _layouts
from wlb.packing.ledger import TokenLedger
from wlb.packing.types import BatchPlan, Piece

pytestmark = [pytest.mark.dist, pytest.mark.slow]


def _worker(rank, world, extras, out_path):
    """Each of ``extras`` in turn on the same processes (``build`` re-creates megatron's groups
    for each layout): one start-up per world size instead of one per layout."""
    warnings.filterwarnings("ignore")
    from wlb.training.loop import train_step
    from wlb.training.setup import build

    results = {}
    for extra in extras:
        run = build(_config(list(extra)))
        mbs = _layouts(run.schedule.batcher.lengths, run.cost)["wlb"]
        dp = run.groups.layout.dp
        out = []
        for it in range(3):  # three steps: the later ones start from the earlier updates
            m = train_step(run, BatchPlan(it, mbs, [j % dp for j in range(len(mbs))]))
            out.append((m["lm_loss"], _grads(run), m["grad_norm"],
                        m.get("elastic_group_sizes"), m.get("elastic_speedup_pred")))
        results[tuple(extra)] = out
    if rank == 0:
        torch.save(results, out_path)


def _run(tmp_path, world, extras):
    path = tmp_path / f"world{world}.pt"
    run_distributed(_worker, world, [tuple(e) for e in extras], str(path))
    return torch.load(path, weights_only=False)


CASES = [
    (2, []),  # DP = 2: the pool is two replicas
    (2, ["--context-parallel-size", "2"]),  # CP = 2: the pool is one CP group
    (4, ["--context-parallel-size", "2"]),  # DP = 2 x CP = 2
    (4, ["--pipeline-model-parallel-size", "2"]),  # DP = 2 x PP = 2
    (4, ["--pipeline-model-parallel-size", "2", "--num-layers-per-virtual-pipeline-stage",
         "1"]),  # DP = 2 x PP = 2, interleaved (VPP = 2)
    (4, ["--tensor-model-parallel-size", "2", "--sequence-parallel"]),  # DP = 2 x TP = 2, SP
    (4, ["--context-parallel-size", "2", "--pipeline-model-parallel-size", "2"]),  # CP2 x PP2
    (4, []),  # DP = 4: groups of 1, 2 and 4 replicas
    (2, ["--use-distributed-optimizer"]),  # DP = 2, optimizer state sharded over the replicas
]


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """The reference: the same three steps on one process."""
    return _run(tmp_path_factory.mktemp("ref"), 1, [[]])[()]


@pytest.fixture(scope="module")
def elastic_runs(tmp_path_factory):
    """Every case of :data:`CASES` with ``--wlb-elastic-cp``, one process group per world size."""
    out = {}
    for world in sorted({w for w, _ in CASES}):
        extras = [[*e, "--wlb-elastic-cp"] for w, e in CASES if w == world]
        got = _run(tmp_path_factory.mktemp(f"world{world}"), world, extras)
        out.update({(world, k[:-1]): v for k, v in got.items()})
    return out


@pytest.mark.parametrize("world,extra", CASES)
def test_elastic_cp_gives_the_one_process_loss_and_gradients(elastic_runs, one_process, world,
                                                              extra):
    got = elastic_runs[world, tuple(extra)]
    for (loss, grad, norm, _, _), (rloss, rgrad, rnorm, _, _) in zip(got, one_process):
        assert loss == pytest.approx(rloss, abs=1e-5)  # steps 2, 3 check the earlier updates
        # the gradient norm covers every stage and TP shard (megatron reduces it over them)
        assert norm == pytest.approx(rnorm, rel=1e-5)
        sharded = {"--pipeline-model-parallel-size", "--tensor-model-parallel-size",
                   "--use-distributed-optimizer"} & set(extra)
        if not sharded:  # (else rank 0 holds one stage's, one TP shard's, or the distributed
            # optimizer's reduce-scattered share of the gradients)
            torch.testing.assert_close(grad, rgrad, rtol=1e-4, atol=1e-6 * rgrad.abs().max())
    sizes, speedup = got[0][3], got[0][4]
    assert sizes and speedup >= 1.0  # never predicted slower than the fixed layout
    if world == 4 and not extra:
        assert {"1", "2", "4"} & set(sizes) != {"1"}, sizes  # the pool was regrouped


def test_a_run_with_elastic_cp_logs_its_plan_and_resumes_exactly(tmp_path):
    """The ledger closes, and the resume is bitwise on purpose (same machine and layout:
    docs/reliability.md, "What is bitwise")."""
    from tests.helpers.torchrun import TINY, WLB, run_pretrain

    flags = [f for f in TINY if f not in ("--train-iters", "3")] + WLB + [
        "--wlb-elastic-cp", "--train-iters", "4"]
    plans = tmp_path / "plans.jsonl"
    full = run_pretrain(2, flags + ["--log-plans", str(plans)], str(tmp_path / "full.jsonl"))
    assert all(len(r["elastic_digest"]) == 16 and r["elastic_speedup_pred"] >= 1.0
               for r in full)
    assert any(set(r["elastic_group_sizes"]) != {"1"} for r in full)  # some slot regrouped
    # the token ledger: every document consumed is trained exactly once or still pending (each
    # step checks that its elastic plan trains exactly the logged plan's pieces)
    ledger = TokenLedger()
    rows = [json.loads(line) for line in plans.read_text().splitlines()]
    for r in rows:
        ledger.consume(Piece(e * 10_000 + d, o, n, 0) for e, d, o, n in r["consumed"])
        ledger.train(Piece(e * 10_000 + d, o, n, 0) for mb in r["trained"] for e, d, o, n in mb)
    ledger.check(Piece(e * 10_000 + d, o, n, 0) for e, d, o, n in rows[-1]["pending"])
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
