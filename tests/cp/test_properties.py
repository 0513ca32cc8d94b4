"""Property tests (hypothesis) of the CP index math and attention, on random document lengths."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers.reference import reference_attention
from wlb.cp.shard import rank_segments, shard_positions
from wlb.cp.strategy import ALL_STRATEGIES
from wlb.cp.torch_kernel import attend_segments

docs_st = st.lists(st.integers(1, 200), min_size=1, max_size=12)
SETTINGS = settings(max_examples=60, deadline=None)


@SETTINGS
@given(doc_lens=docs_st, cp=st.integers(1, 4), strategy=st.sampled_from(ALL_STRATEGIES))
def test_every_token_on_exactly_one_cp_rank(doc_lens, cp, strategy):
    held = [p for r in range(cp) for p in shard_positions(doc_lens, cp, r, strategy)]
    assert sorted(held) == list(range(sum(doc_lens)))


@SETTINGS
@given(doc_lens=docs_st, cp=st.integers(2, 4))
def test_per_doc_gives_every_rank_a_pair_of_chunks_of_every_document(doc_lens, cp):
    """Each rank holds chunks r and 2CP-1-r of every document: its share of a document differs
    from any other rank's by at most the pair's two remainder tokens, and over the whole
    micro-batch rank totals differ by at most one token per chunk position (none when the total
    divides by 2CP)."""
    starts = [sum(doc_lens[:i]) for i in range(len(doc_lens))]
    per_rank = [shard_positions(doc_lens, cp, r, "per_doc") for r in range(cp)]
    for start, d in zip(starts, doc_lens):
        shares = [sum(start <= p < start + d for p in pos) for pos in per_rank]
        assert max(shares) - min(shares) <= 2
        base = d // (2 * cp)
        assert all(2 * base <= s <= 2 * base + 2 for s in shares)
    totals = [len(pos) for pos in per_rank]
    assert max(totals) - min(totals) <= 2
    if sum(doc_lens) % (2 * cp) == 0:
        assert len(set(totals)) == 1


@settings(max_examples=25, deadline=None)
@given(doc_lens=st.lists(st.integers(1, 40), min_size=1, max_size=6), cp=st.integers(1, 3),
       strategy=st.sampled_from(ALL_STRATEGIES), seed=st.integers(0, 1000))
def test_each_ranks_attention_equals_the_reference_rows(doc_lens, cp, strategy, seed):
    """Every CP rank's queries against the gathered K/V give the dense reference's rows."""
    g = torch.Generator().manual_seed(seed)
    t = sum(doc_lens)
    q = torch.randn(t, 4, 8, generator=g, dtype=torch.float64)
    k = torch.randn(t, 2, 8, generator=g, dtype=torch.float64)
    v = torch.randn(t, 2, 8, generator=g, dtype=torch.float64)
    ref = reference_attention(q, k, v, doc_lens)
    for r in range(cp):
        rows = torch.tensor(shard_positions(doc_lens, cp, r, strategy), dtype=torch.long)
        front, back = rank_segments(doc_lens, cp, r, strategy)
        out = attend_segments(q[rows], k, v, front + back, 8**-0.5)
        torch.testing.assert_close(out, ref[rows])
