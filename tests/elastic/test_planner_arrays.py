"""The elastic planner's placement (the one-rank groups as arrays, then the own groups) makes
exactly the groups of the per-group loop it replaced (``tests/helpers/elastic_reference.py``), so
elastic plans are unchanged."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers.elastic_reference import group_slot as group_slot_reference
from tests.helpers.elastic_reference import slot_by_work as slot_by_work_reference
from wlb.cost_model import CostModel
from wlb.elastic.plan import ElasticCost, PlanError
from wlb.elastic.planner import _slot_by_work, group_slot
from wlb.packing.types import Piece

COSTS = [
    ElasticCost(CostModel(attn_coef=0.01, linear_coef=0.0, doc_coef=0.0)),
    ElasticCost(CostModel(attn_coef=0.003, linear_coef=1.0, doc_coef=10.0), comm_coef=0.5,
                comm_fixed=20.0, split_efficiency=0.8),
    ElasticCost(CostModel(attn_coef=0.001, linear_coef=2.0, doc_coef=0.0), comm_coef=4.0),
    ElasticCost(CostModel(attn_coef=0.01, linear_coef=1.0, doc_coef=5.0), comm_coef=0.2,
                comm_fixed=150.0, split_efficiency=0.9),
]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 400), min_size=1, max_size=40), st.sampled_from([1, 2, 4, 8, 16]),
       st.sampled_from([50, 100, 200]), st.sampled_from(range(len(COSTS))), st.booleans())
def test_group_slot_makes_the_reference_groups(lengths, pool, rank_tokens, which, ties):
    """Random slots (``ties``: multiples of 25 tokens, so that equal times must be broken the
    same way, by the lowest first rank, and groups fill to exactly their room); both raise, or
    both give the same groups."""
    if ties:
        lengths = [25 * (1 + d % 4) for d in lengths]
    pieces = [Piece(i, 0, d, 0) for i, d in enumerate(lengths)]
    ec = COSTS[which]
    try:
        want = group_slot_reference(pieces, pool, rank_tokens, ec)
    except PlanError as e:
        want = str(e)
    try:
        got = group_slot(pieces, pool, rank_tokens, ec)
    except PlanError as e:
        got = str(e)
    assert got == want



def _packed_slot(rng: random.Random, pool: int, rank_tokens: int) -> list[Piece]:
    """A slot as the packer makes them: micro-batches filled towards their room with a mix of
    short and long documents."""
    pieces: list[Piece] = []
    room = pool * rank_tokens
    while room > 0 and rng.random() < 0.9:
        d = min(room, rng.choice([rng.randint(1, 30), rng.randint(1, 4 * rank_tokens),
                                  25 * rng.randint(1, 4)]))
        pieces.append(Piece(len(pieces), 0, d, 0))
        room -= d
    return pieces


@pytest.mark.parametrize("which", range(len(COSTS)))
def test_group_slot_makes_the_reference_groups_on_packed_slots(which):
    """Slots full of pieces (what hypothesis's short lists rarely draw: several own groups with
    room beside many one-rank groups, where a piece's choice between them is priced)."""
    rng = random.Random(which)
    for _ in range(150):
        pool, rank_tokens = rng.choice([2, 4, 8, 16]), rng.choice([50, 100, 200])
        pieces = _packed_slot(rng, pool, rank_tokens)
        try:
            want = group_slot_reference(pieces, pool, rank_tokens, COSTS[which])
        except PlanError as e:
            want = str(e)
        try:
            got = group_slot(pieces, pool, rank_tokens, COSTS[which])
        except PlanError as e:
            got = str(e)
        assert got == want


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, 300), min_size=0, max_size=60), st.integers(1, 8),
       st.sampled_from([100, 300, 1000]), st.sampled_from(range(len(COSTS))), st.booleans())
def test_slot_by_work_deals_as_the_reference(lengths, slots, cap, which, ties):
    """The re-sliced plan's dealing (a sorted scan) is the reference's full scan."""
    if ties:
        lengths = [25 * (1 + d % 4) for d in lengths]
    pieces = [Piece(i % 7, i, d, 0) for i, d in enumerate(lengths)]
    cost = COSTS[which].cost
    assert _slot_by_work(pieces, slots, cap, cost) == slot_by_work_reference(pieces, slots, cap,
                                                                              cost)
