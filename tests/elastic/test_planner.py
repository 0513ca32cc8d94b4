"""The elastic CP planner, by hand: group sizes, alignment, capacity, exactly-once, slots."""

from __future__ import annotations

import re

import numpy as np
import pytest

from wlb.cost_model import CostModel
from wlb.elastic.plan import (
    ElasticCost,
    ElasticPlan,
    Group,
    PlanError,
    Slot,
    critical_path,
    fixed_slots,
    plan_time,
    slot_time,
    validate_plan,
)
from wlb.elastic.planner import group_slot, plan_elastic, pow2_ceil, pow2_floor
from wlb.packing.types import Piece

SQ = ElasticCost(CostModel(attn_coef=0.01, linear_coef=0.0, doc_coef=0.0))  # W(d) = d^2 / 100


def _pieces(lengths, start=0):
    return [Piece(start + i, 0, d, 0) for i, d in enumerate(lengths)]


def _shape(slot):
    return [(g.first, g.size, [p.length for p in g.pieces]) for g in slot.groups]


def test_pow2():
    assert [pow2_floor(x) for x in (0.5, 1, 1.9, 2, 3, 4, 7.9, 8)] == [1, 1, 1, 2, 2, 4, 4, 8]
    assert [pow2_ceil(x) for x in (0.5, 1, 1.1, 2, 3, 4, 5)] == [1, 1, 2, 2, 4, 4, 8]


def test_docstring_example():
    mbs = [_pieces([200]), _pieces([50, 50], 1), _pieces([30], 3), _pieces([30], 4)]
    fixed = fixed_slots(mbs, [0, 1, 0, 1], 2, 2)
    assert _shape(fixed[0]) == [(0, 2, [200]), (2, 2, [50, 50])]
    assert slot_time(fixed[0], SQ) == 200.0
    plan = plan_elastic(mbs, [0, 1, 0, 1], dp=2, cp=2, rank_tokens=100, ec=SQ)
    assert _shape(plan.slots[0]) == [(0, 4, [200, 50, 50])]
    assert plan.slot_times[0] == 112.5
    # slot 1 (a 30 per replica): with free communication two ranks each (fixed, 4.5) beat one
    # rank each (9): the slot keeps the fixed layout
    assert _shape(plan.slots[1]) == [(0, 2, [30]), (2, 2, [30])]
    assert critical_path(plan.slot_times) == 112.5 + 4.5
    assert critical_path(plan.slot_times, pp=3) == 112.5 + 4.5 + 2 * 112.5


def test_short_documents_stay_on_one_rank_each():
    slot = group_slot(_pieces([30, 30, 20, 20]), 2, 100, SQ)
    assert _shape(slot) == [(0, 1, [30, 20]), (1, 1, [30, 20])]


def test_a_long_document_takes_at_least_the_ranks_its_tokens_need():
    slot = group_slot(_pieces([300, 10, 10]), 8, 100, SQ)
    first = _shape(slot)[0]
    assert first[:2] == (0, 8) or first == (0, 4, [300])
    assert slot.groups[0].size >= 4  # 300 tokens need pow2_ceil(3) = 4 ranks of 100
    with pytest.raises(PlanError, match="do not fit 4 ranks of 100 tokens"):
        group_slot(_pieces([401]), 4, 100, SQ)


def test_groups_are_aligned_and_partition_the_pool():
    rng = np.random.default_rng(0)
    for _ in range(100):
        pool = int(rng.choice([2, 3, 4, 6, 8]))
        lengths = rng.integers(1, 100 * pow2_floor(pool) // 2, size=int(rng.integers(1, 12)))
        while lengths.sum() > 100 * pool // 2:
            lengths = lengths[:-1]
        slot = group_slot(_pieces(lengths.tolist()), pool, 100, SQ)
        ranks = []
        for g in slot.groups:
            assert g.first % g.size == 0 and g.tokens <= g.size * 100
            ranks += range(g.first, g.first + g.size)
        assert sorted(ranks) == list(range(pool))
        assert sorted(p.doc_id for g in slot.groups for p in g.pieces) == list(range(len(lengths)))


def test_communication_cost_stops_the_widening():
    heavy = _pieces([100, 10])
    assert _shape(group_slot(heavy, 8, 100, SQ))[0][:2] == (0, 8)  # free: as wide as it helps
    costly = ElasticCost(SQ.cost, comm_coef=0.5)
    slot = group_slot(heavy, 8, 100, costly)
    # 100 on g ranks: 100 / g + 50 (g - 1) / g -> 100, 75, 62.5, 56.25 for g = 1, 2, 4, 8: wider
    # still helps; with comm_coef 2 it never does
    assert slot.groups[0].size == 8
    # (100 / g + 100 (g - 1) / g = 100, 150, 175 for g = 1, 2, 4): it stays on one rank
    assert group_slot(heavy, 8, 100, ElasticCost(SQ.cost, comm_coef=2.0)).groups[0].size == 1
    expensive = ElasticCost(SQ.cost, comm_coef=2.0)
    assert expensive.group_time([100], 1) < expensive.group_time([100], 2)


def test_the_plan_is_never_slower_than_the_fixed_layout_and_trains_every_piece_once():
    rng = np.random.default_rng(3)
    for dp, cp in ((2, 1), (2, 2), (4, 1), (1, 4), (3, 2)):
        n = dp * 4
        mbs, doc = [], 0
        for _ in range(n):
            lens = []
            while sum(lens) < 250:
                d = int(min(rng.lognormal(3.5, 1.3) + 1, 300 - sum(lens)))
                if d <= 0:
                    break
                lens.append(d)
            mbs.append(_pieces(lens, doc))
            doc += len(lens)
        ranks = [j % dp for j in range(n)]
        for pp in (1, 4):
            plan = plan_elastic(mbs, ranks, dp=dp, cp=cp, rank_tokens=300 // cp, ec=SQ, pp=pp)
            fixed = fixed_slots(mbs, ranks, dp, cp)
            assert plan_time(plan.slots, SQ, pp) <= plan_time(fixed, SQ, pp)
            # (the planner sums over arrays, slot_time one by one: the last bit may differ)
            assert plan.slot_times == pytest.approx([slot_time(s, SQ) for s in plan.slots],
                                                    rel=1e-12)
        seen = sorted(p.doc_id for s in plan.slots for g in s.groups for p in g.pieces)
        assert seen == list(range(doc))
        for s in plan.slots:
            assert sum(g.size for g in s.groups) == dp * cp
        assert plan.digest() == plan_elastic(mbs, ranks, dp=dp, cp=cp, rank_tokens=300 // cp,
                                             ec=SQ, pp=4).digest()  # deterministic


def test_a_split_documents_attention_costs_one_over_its_efficiency_and_its_overhead_stays():
    ec = ElasticCost(CostModel(0.01, 1.0, 10.0), split_efficiency=0.8)  # the docstring's example
    assert ec.group_time([100, 50], 1) == pytest.approx(295.0)
    assert ec.group_time([100, 50], 2) == pytest.approx((125 / 0.8 + 150) / 2 + 2 * 10)
    assert ElasticCost(ec.cost).group_time([100, 50], 2) == pytest.approx(125 / 2 + 75 + 20)
    # a document that pays to split over 2 at efficiency 1 keeps one rank at 0.5
    heavy = [Piece(0, 0, 100, 0)] + [Piece(i, 0, 10, 0) for i in range(1, 5)]
    assert group_slot(heavy, 2, 200, ElasticCost(SQ.cost)).groups[0].size == 2
    assert group_slot(heavy, 2, 200, ElasticCost(SQ.cost, split_efficiency=0.5)
                      ).groups[0].size == 1
    with pytest.raises(PlanError, match="split efficiency 0 must be > 0"):
        ElasticCost(SQ.cost, split_efficiency=0)


def test_group_time():
    assert SQ.group_time([100, 50], 2) == (100 + 25) / 2
    ec = ElasticCost(SQ.cost, comm_coef=1.0)
    assert ec.group_time([100], 4) == 100 / 4 + 100 * 3 / 4
    assert ec.group_time([], 1) == 0.0
    # the fixed price: every group of two or more ranks pays it, one rank (no collective) not
    fx = ElasticCost(SQ.cost, comm_coef=1.0, comm_fixed=7.0)
    assert fx.group_time([100], 4) == 100 / 4 + 7.0 + 100 * 3 / 4
    assert fx.group_time([100], 1) == 100.0
    # a short piece: the fixed price keeps it whole on one rank
    assert _shape(group_slot(_pieces([20]), 2, 100, fx))[0][:2] == (0, 1)
    assert Group(0, 2, (Piece(0, 0, 5, 0), Piece(1, 0, 7, 0))).tokens == 12


def test_at_dp_2_a_dominant_document_takes_both_ranks_with_the_rest_packed_in():
    # the 150 is 90% of the work: alone on a rank the slot lasts 225; the pool of two holds
    # all 200 tokens in one sequence: (225 + 25) / 2 = 125
    mbs = [_pieces([150]), _pieces([50], 1)]
    plan = plan_elastic(mbs, [0, 1], dp=2, cp=1, rank_tokens=200, ec=SQ)
    assert _shape(plan.slots[0]) == [(0, 2, [150, 50])]
    assert plan.slot_times == [125.0]


def test_re_slicing_balances_work_across_slots():
    # replica 0 holds [100] then [100], replica 1 [10] then [10]: regrouped, each slot runs a
    # 100 (two ranks with its 10: 50.5 each); re-sliced, the same -- never worse than fixed
    mbs = [_pieces([100]), _pieces([10], 1), _pieces([100], 2), _pieces([10], 3)]
    plan = plan_elastic(mbs, [0, 1, 0, 1], dp=2, cp=1, rank_tokens=200, ec=SQ)
    fixed = [slot_time(s, SQ) for s in fixed_slots(mbs, [0, 1, 0, 1], 2, 1)]
    assert fixed == [100.0, 100.0]
    assert plan.slot_times == [50.5, 50.5]


def _plan(*slots):
    return ElasticPlan([Slot(tuple(Group(f, g, tuple(ps)) for f, g, ps in s)) for s in slots],
                       [0.0] * len(slots))


def test_validate_plan_accepts_the_planners_plans():
    mbs = [_pieces([200]), _pieces([50, 50], 1), _pieces([30], 3), _pieces([30], 4)]
    plan = plan_elastic(mbs, [0, 1, 0, 1], dp=2, cp=2, rank_tokens=100, ec=SQ)
    validate_plan(plan, 4, [p for mb in mbs for p in mb])  # no error


@pytest.mark.parametrize("slots,pieces,message", [
    # a rank in no group: its peers' collectives would wait for it
    ([[(0, 2, _pieces([10]))]], _pieces([10]), "cover pool ranks [0, 1], not each of 0..3"),
    # a rank in two groups
    ([[(0, 2, _pieces([10])), (1, 1, []), (2, 2, [])]], _pieces([10]), "not each of 0..3"),
    # a group of 2 starting at rank 1 is not aligned; a group of 3 is not a power of two
    ([[(0, 1, _pieces([10])), (1, 2, []), (3, 1, [])]], _pieces([10]), "(1, 2) is not an aligned"),
    ([[(0, 3, _pieces([10])), (3, 1, [])]], _pieces([10]), "(0, 3) is not an aligned"),
    # a piece trained twice, one left out, one cut
    ([[(0, 4, _pieces([10, 10]))]], _pieces([10]), "trains 2 pieces (20 tokens), not the "
     "iteration's 1 (10 tokens)"),
    ([[(0, 4, _pieces([10]))]], _pieces([10, 20]), "trains 1 pieces"),
    ([[(0, 4, [Piece(0, 0, 5, 0)])]], _pieces([10]), "trains 1 pieces (5 tokens)"),
])
def test_validate_plan_refuses_a_plan_that_would_deadlock_or_lose_tokens(slots, pieces, message):
    with pytest.raises(PlanError, match=re.escape(message)):
        validate_plan(_plan(*slots), 4, pieces)


def test_plan_time_lets_replicas_that_share_no_group_run_on():
    def one(first, d):
        return Group(first, 1, (Piece(first, 0, d, 0),))

    lin = ElasticCost(CostModel(0.0, 1.0, 0.0))  # W(d) = d
    slots = [Slot((one(0, 3), one(1, 1))), Slot((one(0, 1), one(1, 3)))]
    assert plan_time(slots, lin) == 4.0  # the docstring's example; in lockstep 6
    assert critical_path([slot_time(s, lin) for s in slots]) == 6.0
    joined = [slots[0], Slot((Group(0, 2, (Piece(5, 0, 2, 0), Piece(6, 0, 2, 0))),))]
    assert plan_time(joined, lin) == 5.0  # waits for rank 0 (free at 3), then 4 / 2
    assert plan_time([slots[1], joined[1]], lin) == 5.0  # waits for rank 1 (free at 3)
    assert plan_time(joined, lin, pp=3) == 5.0 + 2 * 3.0


def test_the_planner_keeps_the_fixed_layout_where_replicas_balance_each_other():
    # replica 0 holds a heavy then a light micro-batch, replica 1 the reverse: unsynchronised
    # they finish together, so regrouping either slot (which joins the replicas) cannot win
    lin = ElasticCost(CostModel(0.0, 1.0, 0.0), comm_fixed=1.0)
    mbs = [_pieces([90]), _pieces([10], 1), _pieces([10], 2), _pieces([90], 3)]
    plan = plan_elastic(mbs, [0, 1, 0, 1], dp=2, cp=1, rank_tokens=100, ec=lin)
    assert [_shape(s) for s in plan.slots] == [[(0, 1, [90]), (1, 1, [10])],
                                               [(0, 1, [10]), (1, 1, [90])]]
    assert plan_time(plan.slots, lin) == 100.0
