"""plan_predictions: the per-iteration cost-model figures logged with --log-json (hand-checked)."""

from __future__ import annotations

import pytest

from wlb.config import cp_candidates
from wlb.cost_model import CostModel
from wlb.cp.selector import StrategyChooser
from wlb.host.batches import lay_out, plan_predictions
from wlb.packing.types import BatchPlan, Piece


def _plan(lengths: list[list[int]], dp_ranks: list[int]) -> BatchPlan:
    mbs = [[Piece(doc_id=10 * j + i, offset=0, length=d, arrival=0) for i, d in enumerate(mb)]
           for j, mb in enumerate(lengths)]
    return BatchPlan(step=0, microbatches=mbs, dp_ranks=dp_ranks)


def test_predictions_by_hand():
    # W(d) = d^2: micro-batch work [16+1, 9, 4+4, 1] = [17, 9, 8, 1], total 35
    cost = CostModel(attn_coef=1.0, linear_coef=0.0)
    plan = _plan([[4, 1], [3], [2, 2], [1]], dp_ranks=[0, 1, 1, 0])
    lays = lay_out(plan, 1, StrategyChooser(cp_candidates("per-doc"), 1, None))
    got = plan_predictions(plan, lays, cost, 1)
    assert got["work_pred"] == 35.0
    assert got["microbatch_work"] == [17.0, 9.0, 8.0, 1.0]
    assert got["pp_imbalance_pred"] == pytest.approx(17 * 4 / 35)
    # largest piece 16: no packing into 4 micro-batches beats 16 * 4 / 35
    assert got["pp_imbalance_floor"] == pytest.approx(16 * 4 / 35)
    # replicas: rank 0 = 17 + 1 = 18, rank 1 = 9 + 8 = 17
    assert got["dp_imbalance_pred"] == pytest.approx(18 * 2 / 35)
    assert got["cp_imbalance_pred"] == 1.0 and got["cp_strategy"] == {"per_seq": 4}


def test_floor_is_one_when_pieces_can_balance():
    cost = CostModel(attn_coef=0.0, linear_coef=1.0)
    plan = _plan([[2, 2], [1, 3]], [0, 0])
    got = plan_predictions(plan, lay_out(plan, 1, StrategyChooser(("per_seq",), 1, None)),
                           cost, 1)
    assert got["pp_imbalance_pred"] == 1.0 and got["pp_imbalance_floor"] == 1.0
    assert got["dp_imbalance_pred"] == 1.0


def _pad_sensitive(doc_lens, cp_size, strategy):
    """Per-rank latency under which per_doc wins only when a pad document is present (the last
    length is the pad 1 for 3 + 4 tokens at pad_multiple 4): a chooser that saw the lengths
    without the pad would pick per_seq."""
    padded = sum(doc_lens) % 4 == 0 and len(doc_lens) == 3
    fast = "per_doc" if padded else "per_seq"
    return [1.0 if strategy == fast else 2.0] * cp_size


def test_cp_strategy_is_chosen_once_on_the_trained_lengths():
    cost = CostModel(attn_coef=1.0, linear_coef=1.0)
    plan = _plan([[3, 4], [4, 4], []], dp_ranks=[0, 0, 0])
    lays = lay_out(plan, 4, StrategyChooser(("per_seq", "per_doc"), 2, _pad_sensitive))
    # trained layouts: 3 + 4 + pad 1; 4 + 4 (no pad); an empty micro-batch is one pad document
    assert [lay.seq_lens for lay in lays] == [(3, 4, 1), (4, 4), (4,)]
    assert [lay.strategy for lay in lays] == ["per_doc", "per_seq", "per_seq"]
    got = plan_predictions(plan, lays, cost, 2)
    assert got["cp_strategy"] == {"per_doc": 1, "per_seq": 2}
    # the CP imbalance is that of the layouts that run: (3, 4, 1) per_doc, (4, 4) and (4,) per_seq
    from wlb.cp.shard import rank_segments
    from wlb.metrics import imbalance

    def work(lens, s):
        return [sum(2 * x.pairs + x.length for h in rank_segments(lens, 2, r, s) for x in h)
                for r in range(2)]

    want = [imbalance(work((3, 4, 1), "per_doc")), imbalance(work((4, 4), "per_seq")),
            imbalance(work((4,), "per_seq"))]
    assert got["cp_imbalance_pred"] == pytest.approx(sum(want) / 3)
