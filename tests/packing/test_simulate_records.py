"""wlb.packing.simulate: what it records, by recomputing each figure from the plans it passes
to ``on_plan`` (each assertion kills a named mutant of the driver)."""

from __future__ import annotations

import numpy as np
import pytest

from wlb.cost_model import CostModel
from wlb.packing import GlobalBatcher, build_packer
from wlb.packing.simulate import simulate
from wlb.packing.types import assign_dp_ranks, microbatch_workloads

COST = CostModel(attn_coef=0.01, linear_coef=1.0, doc_coef=0.0)
LENGTHS = np.random.default_rng(0).integers(1, 40, size=60).tolist()


def _wlb(n=8, thresholds=(4, 8, 16, 30)):
    return build_packer("wlb", num_microbatches=n, seq_length=16, cost_model=COST,
                        outlier_thresholds=list(thresholds), max_wait=1000)


def _run(packer, num_batches=200, **kw):
    plans = []
    return simulate(LENGTHS, packer, num_batches, on_plan=plans.append, **kw), plans


def test_delay_flush_and_series_recomputed_from_the_plans():
    res, plans = _run(_wlb(), flush=True)
    s = res.summary()
    assert s["packer"] == "wlb" and s["data_exhausted"] and s["ledger_ok"]
    delays = [(plan.step - p.arrival, p.length) for plan in plans for mb in plan.microbatches
              for p in mb]
    assert res.delay_token_sum == sum(d * n for d, n in delays) > 0
    assert res.delay_max == max(d for d, _ in delays) > 1
    assert res.flush_batches == 2 and len(plans) == 12  # 10 batches drawn, 2 flushed
    assert len(res.imbalances) == 9  # neither the short last batch nor the flushed ones
    assert [plan.step for plan in plans] == list(range(12))
    assert all(plan.dp_ranks == [0] * 8 for plan in plans)  # dp_size 1 by default


def test_defaults_are_file_order_one_rank_no_flush():
    res, plans = _run(_wlb())
    assert res.flush_batches == 0 and res.summary()["docs_pending_at_end"] > 0
    first = {p for mb in plans[0].microbatches for p in mb}
    assert first <= set(GlobalBatcher(LENGTHS, 8 * 16, split_at_budget=False,
                                      max_piece=20).next_batch())  # file order
    _, splans = _run(_wlb(), shuffle=True, seed=3)
    sfirst = {p for mb in splans[0].microbatches for p in mb}
    assert sfirst <= set(GlobalBatcher(LENGTHS, 8 * 16, split_at_budget=False, max_piece=20,
                                       shuffle=True, seed=3).next_batch())
    assert sfirst != first


def test_batch_count_and_dp_dealing():
    res, plans = _run(_wlb(n=4), num_batches=3, dp_size=2)
    assert len(plans) == 3 and len(res.imbalances) == 3
    for plan in plans:
        assert plan.dp_ranks == assign_dp_ranks(microbatch_workloads(plan.microbatches, COST), 2)
    assert len(_run(_wlb(n=4), num_batches=1)[1]) == 1
    with pytest.raises(ValueError, match="^num_batches must be > 0, got 0$"):
        simulate(LENGTHS, _wlb(), 0)


def test_a_last_batch_that_is_exactly_full_stays_in_the_series():
    stock = build_packer("megatron", num_microbatches=2, seq_length=8, cost_model=COST)
    res = simulate([5, 11, 7, 9, 16], stock, 10)  # 48 tokens: exactly 3 batches of 16
    assert res.data_exhausted and len(res.imbalances) == 3
