"""THD collation and CP slicing, against hand-written expectations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from wlb.data.collate import collate, collate_shard, shard_for_cp
from wlb.data.sources import MockDocuments
from wlb.packing.types import Piece


class _Docs:
    """Two documents: A = [10, 11, 12] (ends with EOD 99) and B = [20..25]."""

    lengths = np.array([3, 6])
    vocab_size, eod = 100, 99
    docs = [np.array([10, 11, 99]), np.array([20, 21, 22, 23, 24, 25])]

    def tokens(self, doc_id, start, stop):
        return self.docs[doc_id][start:stop]


def test_collate_worked_example_from_docstring():
    mb = collate([Piece(0, 0, 3, 0), Piece(1, 2, 2, 0)], _Docs(), pad_multiple=4)
    assert mb.seq_lens == (3, 2, 3) and mb.num_pad == 3
    assert mb.tokens.tolist() == [10, 11, 99, 22, 23, 99, 99, 99]
    # labels come from the document: B's piece [22, 23] predicts [23, 24] (24 is outside it)
    assert mb.labels.tolist()[:5] == [11, 99, 99, 23, 24]
    assert mb.loss_mask.tolist() == [1, 1, 0, 1, 1, 0, 0, 0]
    assert mb.positions.tolist() == [0, 1, 2, 0, 1, 0, 1, 2]


def test_piece_ending_document_masks_its_last_token():
    mb = collate([Piece(1, 3, 3, 0)], _Docs())
    assert mb.tokens.tolist() == [23, 24, 25]
    assert mb.labels.tolist()[:2] == [24, 25] and mb.loss_mask.tolist() == [1, 1, 0]


def test_cp_shards_partition_the_micro_batch():
    src = MockDocuments([5, 9, 17, 30], num_docs=6, vocab_size=50, seed=3)
    pieces = [Piece(i, 0, int(n), 0) for i, n in enumerate(src.lengths)]
    mb = collate(pieces, src, pad_multiple=8)
    for strategy in ("per_seq", "per_doc"):
        seen = torch.cat([shard_for_cp(mb, 4, r, strategy)["tokens"] for r in range(4)])
        assert sorted(seen.tolist()) == sorted(mb.tokens.tolist())
        counts = [len(shard_for_cp(mb, 4, r, strategy)["tokens"]) for r in range(4)]
        assert counts == [mb.num_tokens // 4] * 4, (strategy, counts)


def test_mock_documents_are_deterministic_and_end_with_eod():
    a = MockDocuments([100, 200], num_docs=5, vocab_size=64, seed=1)
    b = MockDocuments([100, 200], num_docs=5, vocab_size=64, seed=1)
    assert a.lengths.tolist() == b.lengths.tolist()
    for i in range(5):
        doc = a.tokens(i, 0, int(a.lengths[i]))
        assert (doc == b.tokens(i, 0, int(b.lengths[i]))).all()
        assert doc[-1] == a.eod and doc.max() < 64
        assert (a.tokens(i, 3, 7) == doc[3:7]).all()


def test_collate_shard_worked_example_from_docstring():
    got, seq_lens = collate_shard([Piece(0, 0, 3, 0), Piece(1, 2, 2, 0)], _Docs(), 4, 2, 0,
                                  "per_doc")
    assert seq_lens == (3, 2, 3)
    assert got["positions"].tolist() == [0, 0, 1, 2]
    assert got["tokens"].tolist() == [10, 22, 23, 99] and got["labels"].tolist() == [11, 23, 24, 99]
    assert got["loss_mask"].tolist() == [1, 1, 1, 0]


class _Counting:
    """A source that counts the tokens read from it."""

    def __init__(self, base) -> None:
        self.base, self.read = base, 0
        self.lengths, self.vocab_size, self.eod = base.lengths, base.vocab_size, base.eod

    def tokens(self, doc_id, start, stop):
        self.read += stop - start
        return self.base.tokens(doc_id, start, stop)


MOCK = MockDocuments([5, 40, 300, 7], 60, vocab_size=100, seed=3)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 59), st.floats(0, 1), st.floats(0, 1)), max_size=6),
       st.integers(1, 4), st.sampled_from([1, 2, 8]), st.sampled_from(["per_seq", "per_doc",
                                                                       "mixed"]))
def test_collate_shard_is_the_shard_of_the_collated_micro_batch(spans, cp, pad, strategy):
    """Reading a rank's rows directly gives exactly the rows sliced from the whole micro-batch
    (tokens, labels, loss mask, positions; dtypes too), for every rank, and reads each token of
    the micro-batch once over all ranks (plus one label token per segment at most)."""
    pieces = []
    for d, a, b in spans:  # a piece of document d: offset and length from the two fractions
        n = int(MOCK.lengths[d])
        offset = min(int(a * n), n - 1)
        pieces.append(Piece(d, offset, max(1, int(b * (n - offset))), 0))
    mb = collate(pieces, MOCK, pad)
    read = 0
    for r in range(cp):
        src = _Counting(MOCK)
        got, seq_lens = collate_shard(pieces, src, pad, cp, r, strategy)
        want = shard_for_cp(mb, cp, r, strategy)
        assert seq_lens == mb.seq_lens
        for k, v in want.items():
            assert got[k].dtype == v.dtype and torch.equal(got[k], v), (k, r)
        read += src.read
    real = mb.num_tokens - mb.num_pad
    assert real <= read <= real + (2 * cp * len(pieces) if cp > 1 or strategy != "per_seq"
                                   else len(pieces))


def test_collate_shard_refuses_a_piece_past_its_document():
    with pytest.raises(ValueError, match="runs past document 0 of length 3"):
        collate_shard([Piece(0, 2, 2, 0)], _Docs(), 1, 2, 0, "per_doc")
