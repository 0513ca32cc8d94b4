"""GlobalBatcher at its bounds, by hand: the smallest legal budget and piece cap, the refusals,
a fresh batcher's state, and a document that exactly fills the room left."""

from __future__ import annotations

import pytest

from wlb.packing import GlobalBatcher, Piece


def test_smallest_budget_and_cap_and_a_fresh_state():
    b = GlobalBatcher([3, 2], 1, split_at_budget=True, max_piece=1)
    assert (b.step, b.piece_epochs) == (0, [])
    assert b.next_batch() == [Piece(0, 0, 1, 0)] and b.piece_epochs == [0]
    for kw, msg in (({"budget": 0}, "^token budget per global batch must be > 0, got 0$"),
                    ({"budget": 4, "max_piece": 0}, "^max_piece must be > 0, got 0$")):
        with pytest.raises(ValueError, match=msg):
            GlobalBatcher([3], split_at_budget=False, **kw)


def test_a_document_that_exactly_fills_the_room_joins_the_batch():
    b = GlobalBatcher([4, 4, 5], 8, split_at_budget=False)
    assert b.next_batch() == [Piece(0, 0, 4, 0), Piece(1, 0, 4, 0)]
    assert b.next_batch() == [Piece(2, 0, 5, 1)]
