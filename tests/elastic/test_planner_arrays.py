"""The elastic planner's placement (the one-rank groups as arrays, then the own groups) makes
exactly the groups of the per-group loop it replaced (``tests/helpers/elastic_reference.py``), so
elastic plans are unchanged."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers.elastic_reference import group_slot as group_slot_reference
from wlb.cost_model import CostModel
from wlb.elastic.plan import ElasticCost, PlanError
from wlb.elastic.planner import group_slot
from wlb.packing.types import Piece

COSTS = [
    ElasticCost(CostModel(attn_coef=0.01, linear_coef=0.0, doc_coef=0.0)),
    ElasticCost(CostModel(attn_coef=0.003, linear_coef=1.0, doc_coef=10.0), comm_coef=0.5,
                comm_fixed=20.0, split_efficiency=0.8),
    ElasticCost(CostModel(attn_coef=0.001, linear_coef=2.0, doc_coef=0.0), comm_coef=4.0),
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

