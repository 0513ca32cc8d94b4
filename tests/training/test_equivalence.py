"""Packing and CP equivalence: the same pieces give the same loss and gradients however they
are packed into micro-batches, and whichever CP sharding strategy slices them."""

from __future__ import annotations

import warnings

import pytest
import torch

from tests.helpers.dist import run_distributed
from tests.helpers.torchrun import TINY
from wlb.packing import GlobalBatcher, build_packer
from wlb.packing.base import default_max_tokens
from wlb.packing.types import BatchPlan

pytestmark = [pytest.mark.dist, pytest.mark.slow]
N, SEQ = 8, 256


def _config(extra: list[str]):
    from wlb.training.arguments import parse

    return parse(TINY + ["--clip-grad", "0", "--wlb-outlier-thresholds", "none"] + extra)


def _sequential(pieces, n: int, cap: int):
    """Megatron-style layout of whole pieces: fill micro-batches in arrival order."""
    out, j = [[] for _ in range(n)], 0
    for p in pieces:
        if sum(q.length for q in out[j]) + p.length > cap:
            j += 1
        out[j].append(p)
    return out


def _layouts(lengths, cost) -> dict:
    # 85% of the token budget, so that every packer can place every piece now (no carry-over)
    batcher = GlobalBatcher(lengths, int(0.85 * N * SEQ), split_at_budget=False, max_piece=SEQ)
    pieces = batcher.next_batch()
    cap = default_max_tokens(SEQ)
    out = {"sequential": _sequential(pieces, N, cap)}
    for name in ("fixed-greedy", "wlb"):
        kw = {"outlier_thresholds": []} if name == "wlb" else {}
        out[name] = build_packer(name, num_microbatches=N, seq_length=SEQ, cost_model=cost,
                                 **kw).pack(list(pieces))
    key = sorted(pieces)
    lens = {k: sorted(sum(p.length for p in mb) for mb in v) for k, v in out.items()}
    assert lens["sequential"] != lens["wlb"], "layouts should differ for the test to mean much"
    for name, mbs in out.items():  # every layout trains exactly the same pieces
        assert sorted(p for mb in mbs for p in mb) == key, name
    return out


def _grads(run) -> torch.Tensor:
    return torch.cat([p.main_grad.detach().reshape(-1).clone()
                      for m in run.model for p in m.module.parameters()])


def _worker(rank, world, mode, extra, out_path):
    warnings.filterwarnings("ignore")
    from wlb.config import cp_candidates
    from wlb.cp.selector import StrategyChooser
    from wlb.training.loop import train_step
    from wlb.training.setup import build

    results = {}
    variants = ["sequential", "fixed-greedy", "wlb"] if mode == "packing" else \
        ["per-seq", "per-doc", "mixed", "adaptive", "adaptive-paper"]
    for v in variants:
        run = build(_config(extra))
        layouts = _layouts(run.schedule.batcher.lengths, run.cost)
        if mode == "packing":
            mbs = layouts[v]
        else:
            mbs = layouts["wlb"]
            run.chooser = StrategyChooser(cp_candidates(v), run.groups.layout.cp,
                                          run.chooser.table)
        plan = BatchPlan(0, mbs, [0] * len(mbs))
        m = train_step(run, plan)
        results[v] = (m["lm_loss"], _grads(run), m["cp_strategy"])
    if rank == 0:
        torch.save(results, out_path)


def _check(results):
    names = list(results)
    ref_loss, ref_grad, _ = results[names[0]]
    assert ref_grad.abs().max() > 0
    for name in names[1:]:
        loss, grad, _ = results[name]
        assert loss == pytest.approx(ref_loss, abs=1e-5), name
        torch.testing.assert_close(grad, ref_grad, rtol=1e-4, atol=1e-6 * ref_grad.abs().max())


def test_packing_layouts_give_same_loss_and_grads(tmp_path):
    out = tmp_path / "packing.pt"
    run_distributed(_worker, 1, "packing", [], str(out))
    _check(torch.load(out, weights_only=False))


def test_cp_strategies_give_same_loss_and_grads(tmp_path):
    out = tmp_path / "cp.pt"
    run_distributed(_worker, 2, "cp", ["--context-parallel-size", "2"], str(out))
    results = torch.load(out, weights_only=False)
    _check(results)
    assert results["per-seq"][2] == {"per_seq": N} and results["per-doc"][2] == {"per_doc": N}
