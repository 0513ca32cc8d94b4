"""plan_predictions: the per-iteration cost-model figures logged with --log-json (hand-checked)."""

from __future__ import annotations

import pytest

from wlb.cost_model import CostModel
from wlb.packing.types import BatchPlan, Piece
from wlb.training.batches import StrategyChooser, plan_predictions


def _plan(lengths: list[list[int]], dp_ranks: list[int]) -> BatchPlan:
    mbs = [[Piece(doc_id=10 * j + i, offset=0, length=d, arrival=0) for i, d in enumerate(mb)]
           for j, mb in enumerate(lengths)]
    return BatchPlan(step=0, microbatches=mbs, dp_ranks=dp_ranks)


def test_predictions_by_hand():
    # W(d) = d^2: micro-batch work [16+1, 9, 4+4, 1] = [17, 9, 8, 1], total 35
    cost = CostModel(attn_coef=1.0, linear_coef=0.0)
    plan = _plan([[4, 1], [3], [2, 2], [1]], dp_ranks=[0, 1, 1, 0])
    got = plan_predictions(plan, cost, 1, StrategyChooser("per-doc", 1, None))
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
    got = plan_predictions(_plan([[2, 2], [1, 3]], [0, 0]), cost, 1,
                           StrategyChooser("per-seq", 1, None))
    assert got["pp_imbalance_pred"] == 1.0 and got["pp_imbalance_floor"] == 1.0
    assert got["dp_imbalance_pred"] == 1.0
