"""The token ledger's summary and its refusals, by hand (each line kills a named mutant)."""

from __future__ import annotations

import pytest

from wlb.packing import Piece
from wlb.packing.ledger import LedgerError, TokenLedger


def _ledger() -> TokenLedger:
    led = TokenLedger()
    led.consume([Piece(1, 0, 10, 0), Piece(2, 0, 6, 0), Piece(3, 0, 4, 0)])
    led.train([Piece(1, 0, 4, 0), Piece(3, 0, 4, 0)])
    return led


def test_summary_counts_every_pending_piece_and_document():
    pending = [Piece(1, 4, 3, 0), Piece(1, 7, 3, 0), Piece(2, 0, 6, 0)]
    assert _ledger().check(pending) == {
        "consumed_tokens": 20, "trained_tokens": 8, "pending_tokens": 12,
        "pieces_pending": 3, "docs_pending": 2}


def test_a_token_trained_twice_is_named_with_its_range():
    led = _ledger()
    led.train([Piece(1, 3, 4, 0)])  # overlaps [0, 4)
    with pytest.raises(LedgerError, match=r"^document 1: token range \[3, 7\) appears twice$"):
        led.check([Piece(1, 7, 3, 0), Piece(2, 0, 6, 0)])


def test_pending_or_trained_tokens_that_were_never_consumed_are_refused():
    with pytest.raises(LedgerError, match=r"document 9: consumed \[\] but trained\+pending"):
        _ledger().check([Piece(1, 4, 6, 0), Piece(2, 0, 6, 0), Piece(9, 0, 2, 0)])
    led = _ledger()
    led.train([Piece(8, 0, 5, 0)])  # trained, never consumed: invented
    with pytest.raises(LedgerError, match=r"document 8: consumed \[\] but trained\+pending"):
        led.check([Piece(1, 4, 6, 0), Piece(2, 0, 6, 0)])


def test_dp_dealing_accumulates_each_ranks_load():
    from wlb.packing.types import assign_dp_ranks

    # 10 -> r0, 9 -> r1, 1 -> r1 (9 < 10), 1 -> r0 (tie at 10, lower rank), 1 -> r1, 1 -> r0
    assert assign_dp_ranks([10.0, 9.0, 1.0, 1.0, 1.0, 1.0], 2) == [0, 1, 1, 0, 1, 0]
    with pytest.raises(ValueError, match="cannot be split evenly over dp_size=0"):
        assign_dp_ranks([1.0, 2.0], 0)


def test_packed_seq_lens_pads_only_when_asked():
    from wlb.packing.types import packed_seq_lens

    assert packed_seq_lens([3]) == (3,)  # the default pads to a multiple of 1: nothing


def test_threshold_and_queue_errors_name_their_values():
    from wlb.packing.queues import OutlierQueues, validate_thresholds

    assert validate_thresholds([1, 5]) == [1, 5]  # 1 token is a positive threshold
    with pytest.raises(ValueError, match=r"^outlier thresholds: 0 is not a positive integer"):
        validate_thresholds([0, 5])
    with pytest.raises(ValueError, match=r"^outlier thresholds must be strictly ascending"):
        validate_thresholds([5, 5])
    with pytest.raises(ValueError, match=r"^release_count must be > 0, got 0$"):
        OutlierQueues([4], release_count=0)
