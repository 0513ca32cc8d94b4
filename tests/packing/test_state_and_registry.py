"""Hand-checked details the other packing tests left open: state round trips, the registry,
the plan digest's format, the fixed-length greedy's order, the overdue boundary."""

from __future__ import annotations

import json

import numpy as np
import pytest

from wlb.cost_model import CostModel
from wlb.packing import OutlierQueues, Piece, build_packer
from wlb.packing.base import _REGISTRY, register_packer
from wlb.packing.schedule import PlanSchedule
from wlb.packing.types import BatchPlan
from wlb.packing.wlb import WLBPacker

LIN = CostModel(attn_coef=0.0, linear_coef=1.0, doc_coef=0.0)


def test_plan_digest_is_pinned():
    """Logs and checkpoints compare digests across versions: the format must not drift."""
    plan = BatchPlan(3, [[Piece(1, 0, 5, 0), Piece(2, 4, 3, 1)], []], [0, 1])
    assert plan.digest() == "7b1a6a1b59fab736"
    assert BatchPlan(3, [[Piece(1, 0, 5, 0), Piece(2, 4, 3, 1)], []], [1, 0]).digest() != (
        plan.digest())
    assert BatchPlan(3, [[Piece(1, 1, 5, 0), Piece(2, 4, 3, 1)], []], [0, 1]).digest() != (
        plan.digest())
    assert BatchPlan(3, [[Piece(1, 0, 5, 9), Piece(2, 4, 3, 1)], []], [0, 1]).digest() == (
        plan.digest())  # the arrival is bookkeeping, not what is trained


def test_fixed_greedy_places_longest_first_with_ties_by_document():
    packer = build_packer("fixed-greedy", num_microbatches=2, seq_length=6, cost_model=LIN)
    mbs = packer.pack([Piece(0, 0, 1, 0), Piece(1, 0, 4, 0), Piece(2, 0, 2, 0),
                       Piece(3, 0, 4, 0), Piece(4, 0, 2, 0)])
    # 4 (doc 1) -> mb 0, 4 (doc 3) -> mb 1, 2 (doc 2) -> mb 0, 2 (doc 4) -> mb 1, 1 -> carried
    assert [[p.doc_id for p in mb] for mb in mbs] == [[1, 2], [3, 4]]
    assert packer.pending() == [Piece(0, 0, 1, 0)]
    state = json.loads(json.dumps(packer.state_dict()))
    assert state == {"name": "fixed-greedy", "carry": [[0, 0, 1, 0]]}
    again = build_packer("fixed-greedy", num_microbatches=2, seq_length=6, cost_model=LIN)
    again.load_state_dict(state)
    assert again.pending() == [Piece(0, 0, 1, 0)]
    assert [[p.doc_id for p in mb] for mb in packer.flush()] == [[0], []]
    assert packer.flush() == []


def test_registering_a_name_twice_is_refused():
    @register_packer("test-only")
    class Dummy(WLBPacker):
        pass

    try:
        assert isinstance(build_packer("test-only", num_microbatches=2, seq_length=8,
                                       cost_model=LIN), Dummy)
        with pytest.raises(ValueError, match="'test-only' registered twice"):
            register_packer("test-only")(Dummy)
    finally:
        _REGISTRY.pop("test-only", None)


def test_wlb_state_of_before_the_carry_rename_loads():
    packer = WLBPacker(2, 8, LIN, outlier_thresholds=[])
    state = packer.state_dict()
    state["remained"] = [[5, 0, 3, 1]]
    del state["carry"]
    fresh = WLBPacker(2, 8, LIN, outlier_thresholds=[])
    fresh.load_state_dict(json.loads(json.dumps(state)))
    assert fresh.pending() == [Piece(5, 0, 3, 1)]


def test_overdue_at_exactly_max_wait_is_released():
    q = OutlierQueues([10], release_count=4)
    q.push(Piece(0, 0, 12, 2))
    assert q.pop_overdue(step=4, max_wait=3) == []
    assert q.pop_overdue(step=5, max_wait=3) == [Piece(0, 0, 12, 2)]


def test_schedule_resume_keeps_each_pending_piece_epoch():
    """A resumed schedule knows the epoch of every piece still held, across an epoch boundary."""
    lengths = np.random.default_rng(0).integers(5, 60, size=40)

    def make():
        packer = WLBPacker(2, 64, LIN, max_tokens=80, outlier_thresholds=[40], max_wait=6)
        return PlanSchedule(lengths, packer, 1, shuffle=True, seed=3, balance_dp=True)

    a = make()
    for _ in range(80):  # past an epoch boundary (~10 batches an epoch), with pieces held
        a.next_plan()
        if a.batcher.epoch >= 1 and a.pending_with_epochs():
            break
    assert a.batcher.epoch >= 1 and a.pending_with_epochs()
    b = make()
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    assert b.pending_with_epochs() == a.pending_with_epochs()
    for _ in range(10):
        pa, pb = a.next_plan(), b.next_plan()
        assert pa.digest() == pb.digest()
        assert b.last_trained == a.last_trained  # with each piece's epoch


def _matcher(max_wait):
    from wlb.packing.release import match_release  # noqa: F401  (the rule _match feeds)

    quad = CostModel(attn_coef=0.01, linear_coef=1.0, doc_coef=0.0)
    return WLBPacker(2, 160, quad, max_tokens=200, outlier_thresholds=[50], release="match",
                     balance_tol=0.01, max_wait=max_wait)


def test_wlb_match_filler_density_counts_the_carry_too():
    """rho = (work of the batch + carry) / (their tokens) = 1.01 here; the 90 + 62 pair (W
    271.44, 48 tokens of room) reaches T / 1.01 = 288.95 only with rho >= 0.365, and a lone 90
    would with rho >= 1.07."""
    packer = _matcher(32)
    for d in (128, 90, 62):
        packer.queues.push(Piece(d, 0, d, 0))
    packer.carry = [Piece(500, 0, 1, 0)]
    chosen = packer._match([Piece(501, 0, 1, 0), Piece(502, 0, 1, 0)])
    assert [[p.length for p in g] for g in chosen] == [[128], [90, 62]]


def test_wlb_match_ages_and_its_unbounded_wait():
    packer = _matcher(5)
    packer.step = 3
    for d in (128, 60):  # no balanced group: released only when overdue
        packer.queues.push(Piece(d, 0, d, 2))
    assert packer._match([Piece(501, 0, 10, 0)]) == []  # waited 1 < 5
    packer.step = 7
    assert [[p.length for p in g] for g in packer._match([Piece(501, 0, 10, 0)])] == [[128]]
    unbounded = _matcher(None)
    unbounded.step = 100
    for d in (128, 60):
        unbounded.queues.push(Piece(d, 0, d, 0))
    assert unbounded._match([Piece(501, 0, 10, 0)]) == []  # never forced


def test_plan_views_by_dp_rank_and_as_json():
    plan = BatchPlan(2, [[Piece(1, 0, 5, 0)], [Piece(2, 3, 4, 1)], []], [1, 0, 1])
    assert plan.for_dp_rank(1) == [[Piece(1, 0, 5, 0)], []]
    assert plan.for_dp_rank(0) == [[Piece(2, 3, 4, 1)]]
    assert plan.to_json_dict() == {"batch": 2, "microbatches": [[[1, 5]], [[2, 4]], []],
                                   "dp_ranks": [1, 0, 1]}
    assert plan.num_tokens == 9 and plan.lengths() == [[5], [4], []]


def test_pending_pieces_report_their_epoch_and_old_states_load():
    lengths = np.random.default_rng(1).integers(5, 60, size=30)
    packer = WLBPacker(2, 64, LIN, max_tokens=80, outlier_thresholds=[40], max_wait=50)
    s = PlanSchedule(lengths, packer, 1, shuffle=True, seed=2, balance_dp=True)
    for _ in range(200):
        s.next_plan()
        if s.batcher.epoch >= 1 and s.pending_with_epochs():
            break
    pend = s.pending_with_epochs()
    assert pend and all(0 <= e <= s.batcher.epoch for e, *_ in pend)
    state = json.loads(json.dumps(s.state_dict()))
    state.pop("epochs")  # a state saved before the epochs were tracked
    fresh = PlanSchedule(lengths, WLBPacker(2, 64, LIN, max_tokens=80, outlier_thresholds=[40],
                                            max_wait=50), 1, shuffle=True, seed=2,
                         balance_dp=True)
    fresh.load_state_dict(state)
    assert fresh.batcher.state_dict() == s.batcher.state_dict()
