"""PlanSchedule's choices and bookkeeping, by hand: which batcher it builds, the DP dealing rule,
and the consumed / trained / epoch records a plan log and the ledger read."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

import wlb.packing.schedule as schedule_mod
from wlb.cost_model import CostModel
from wlb.packing import GlobalBatcher, Piece, build_packer
from wlb.packing.schedule import PlanSchedule
from wlb.packing.stock_samples import StockBlendBatcher
from wlb.packing.types import assign_dp_ranks, microbatch_workloads

COST = CostModel(attn_coef=0.01, linear_coef=1.0, doc_coef=0.0)
N, SEQ = 4, 16


def _packer(name="wlb"):
    kw = {"outlier_thresholds": []} if name == "wlb" else {}
    return build_packer(name, num_microbatches=N, seq_length=SEQ, cost_model=COST, **kw)


def _records(s: PlanSchedule):
    trained = Counter(tuple(x) for mb in s.last_trained for x in mb)
    return Counter(tuple(x) for x in s.last_consumed), trained


def test_a_fresh_schedule_has_empty_records():
    s = PlanSchedule([5, 9], _packer(), 1, shuffle=False, seed=0, balance_dp=True)
    assert (s.last_consumed, s.last_trained, s.last_pieces, s.last_pack_ms) == ([], [], [], 0.0)


def test_wlb_packs_its_own_stream_unless_told_otherwise():
    lengths = [7, 30, 3, 12, 5, 21, 9, 4] * 3
    own = PlanSchedule(lengths, _packer(), 1, shuffle=True, seed=5, balance_dp=True,
                       num_samples=40)
    assert isinstance(own.batcher, GlobalBatcher)  # megatron_batches defaults to False
    ref = GlobalBatcher(lengths, N * SEQ, split_at_budget=False, max_piece=own.packer.max_piece,
                        shuffle=True, seed=5)
    for _ in range(4):  # the same seeded, shuffled stream as a GlobalBatcher built by hand
        own.next_plan()
        assert own.last_pieces == ref.next_batch()
    plain = PlanSchedule(lengths, _packer(), 1, shuffle=False, seed=5, balance_dp=True)
    plain.next_plan()
    assert [p.doc_id for p in plain.last_pieces][:4] == [0, 1, 1, 2]  # file order; 30 > S_max


def test_blended_stock_batches_follow_the_seed():
    parts = [np.array([9, 14, 6, 11] * 4), np.array([5, 20, 8] * 4)]
    lengths = np.concatenate(parts)

    def first_batch(seed):
        s = PlanSchedule(lengths, _packer("megatron"), 1, shuffle=True, seed=seed,
                         balance_dp=False, num_samples=32, blend=(parts, [0.5, 0.5]))
        s.next_plan()
        return s.last_pieces

    ref = StockBlendBatcher(parts, [0.5, 0.5], N, SEQ, 32, 3)
    assert first_batch(3) == ref.next_batch() and first_batch(3) != first_batch(4)


@pytest.mark.parametrize("balance", [True, False])
def test_dp_dealing_rule(balance):
    lengths = [15, 2, 3, 14, 1, 16, 2, 9, 6, 4] * 4
    s = PlanSchedule(lengths, _packer(), 2, shuffle=False, seed=0, balance_dp=balance)
    for _ in range(3):
        plan = s.next_plan()
        want = (assign_dp_ranks(microbatch_workloads(plan.microbatches, COST), 2) if balance
                else [j % 2 for j in range(N)])
        assert plan.dp_ranks == want


def test_records_tile_the_batch_with_epochs_when_wlb_reorders_megatrons_samples():
    # 3 documents, 30 tokens an epoch, 64 tokens a batch: every batch straddles epochs and holds
    # the same document (same arrival) twice; WLB reorders the pieces
    lengths = [13, 9, 8]
    s = PlanSchedule(lengths, _packer(), 1, shuffle=True, seed=1, balance_dp=True,
                     num_samples=24, megatron_batches=True)
    for _ in range(5):
        s.next_plan()
        consumed, trained = _records(s)
        assert consumed == trained and sum(c for c in consumed.values()) == len(s.last_pieces)
        assert {e for e, *_ in consumed} != {0}  # several epochs in play
        assert s.pending_with_epochs() == [] and s._epochs == {}
        assert s.last_consumed[0] == [
            s.batcher.piece_epochs[0], *(lambda p: [p.doc_id, p.offset, p.length])(
                s.last_pieces[0])]
    with pytest.raises(KeyError, match="was never consumed"):
        s._find(Piece(99, 0, 1, 0))


def test_pack_time_is_recorded_in_milliseconds(monkeypatch):
    ticks = iter([10.0, 10.25])
    monkeypatch.setattr(schedule_mod.time, "perf_counter", lambda: next(ticks))
    s = PlanSchedule([5, 9, 3, 7], _packer(), 1, shuffle=False, seed=0, balance_dp=True)
    s.next_plan()
    assert s.last_pack_ms == 250.0
