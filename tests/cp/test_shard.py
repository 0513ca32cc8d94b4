import random

import pytest

from wlb.cp import (
    inverse_permutation,
    per_seq_padding,
    rank_attention_pairs,
    rank_segments,
    rank_token_counts,
    shard_indices,
    shard_positions,
)


def test_per_doc_worked_example_from_docstring():
    assert shard_positions([8, 6], 2, 0, "per_doc") == [0, 1, 8, 9, 6, 7, 13]
    assert shard_positions([8, 6], 2, 1, "per_doc") == [2, 3, 10, 11, 4, 5, 12]


def test_per_doc_matches_transformer_engine_thd_example():
    # TE's CPU test: cu_seqlens [0, 8, 16], CP=2 -> rank0 {0,1,6,7,8,9,14,15}, rank1 {2..5,10..13}
    assert sorted(shard_positions([8, 8], 2, 0, "per_doc")) == [0, 1, 6, 7, 8, 9, 14, 15]
    assert sorted(shard_positions([8, 8], 2, 1, "per_doc")) == [2, 3, 4, 5, 10, 11, 12, 13]


def test_per_seq_hand_written():
    # 16 tokens, CP=2: chunks of 4; rank 0 holds chunks 0 and 3, rank 1 chunks 1 and 2
    assert shard_positions([5, 11], 2, 0, "per_seq") == [0, 1, 2, 3, 12, 13, 14, 15]
    assert shard_positions([5, 11], 2, 1, "per_seq") == [4, 5, 6, 7, 8, 9, 10, 11]
    # 10 tokens, CP=2: chunk ceil(10/4)=3 -> [0,3) [3,6) [6,9) [9,10); padding 2 reported
    assert shard_positions([10], 2, 0, "per_seq") == [0, 1, 2, 9]
    assert shard_positions([10], 2, 1, "per_seq") == [3, 4, 5, 6, 7, 8]
    assert per_seq_padding([10], 2) == 2
    assert per_seq_padding([5, 11], 2) == 0


def test_chunk_pairing_is_r_and_2cp_minus_1_minus_r():
    # 12 tokens, CP=3: six chunks of 2; rank r holds chunks r and 5 - r (front, then back)
    assert shard_positions([12], 3, 0, "per_seq") == [0, 1, 10, 11]
    assert shard_positions([12], 3, 1, "per_seq") == [2, 3, 8, 9]
    assert shard_positions([12], 3, 2, "per_seq") == [4, 5, 6, 7]
    # per document too: [6, 6] at CP=3 -> each document's chunks of 1 paired the same way
    assert shard_positions([6, 6], 3, 0, "per_doc") == [0, 6, 5, 11]
    assert shard_positions([6, 6], 3, 2, "per_doc") == [2, 8, 3, 9]


def test_remainder_pointer_persists_across_documents():
    # [5, 5] at CP=2 (4 chunk positions): doc 0 has 1 remainder token -> sizes 2,1,1,1 (pointer
    # 0 -> 1); doc 1's remainder goes to position 1 -> sizes 1,2,1,1. Rank 0 = positions 0, 3:
    # [0,1] [5] then [4] [9]; rank 1 = positions 1, 2: [2] [6,7] then [3] [8]. Each rank 5 tokens
    # (a pointer reset per document would give rank 0 six).
    assert shard_positions([5, 5], 2, 0, "per_doc") == [0, 1, 5, 4, 9]
    assert shard_positions([5, 5], 2, 1, "per_doc") == [2, 6, 7, 3, 8]
    assert rank_token_counts([5, 5], 2, "per_doc") == [5, 5]


def test_per_doc_short_documents():
    # documents shorter than 2*CP: remainders dealt round-robin across documents
    lens = [1, 1, 3, 1, 2]  # 8 tokens, CP=2 -> 4 positions
    counts = rank_token_counts(lens, 2, "per_doc")
    assert counts == [4, 4]
    assert sorted(shard_positions(lens, 2, 0, "per_doc") +
                  shard_positions(lens, 2, 1, "per_doc")) == list(range(8))
    assert shard_indices(lens, 2, 0, "per_doc").dtype.is_floating_point is False


@pytest.mark.parametrize("strategy", ["per_seq", "per_doc", "mixed"])
@pytest.mark.parametrize("cp", [1, 2, 3, 4, 8])
def test_property_every_token_once_and_inverse(strategy, cp):
    rng = random.Random(cp)
    for _ in range(25):
        lens = [rng.choice([1, 2, 3, rng.randint(1, 40), rng.randint(1, 400),
                            rng.randint(1, 3000)])
                for _ in range(rng.randint(1, 12))]
        held = [shard_positions(lens, cp, r, strategy) for r in range(cp)]
        flat = [p for h in held for p in h]
        assert sorted(flat) == list(range(sum(lens)))
        inv = inverse_permutation(lens, cp, strategy)
        assert [flat[i] for i in inv] == list(range(sum(lens)))
        if strategy != "per_seq" and sum(lens) % (2 * cp) == 0:
            assert len(set(map(len, held))) == 1  # identical counts, no padding


def test_per_doc_balances_work_per_seq_does_not():
    rng = random.Random(0)
    lens = [rng.randint(50, 200) for _ in range(30)] + [4000]
    lens[-1] += -sum(lens) % 8
    ps = rank_attention_pairs(lens, 4, "per_seq")
    pd = rank_attention_pairs(lens, 4, "per_doc")
    assert max(pd) * 4 / sum(pd) < 1.001
    assert max(ps) * 4 / sum(ps) > 1.2
    assert sum(ps) == sum(pd) == sum(d * (d + 1) // 2 for d in lens)


@pytest.mark.parametrize("bad", [dict(cp_size=0), dict(cp_rank=2), dict(strategy="zigzag")])
def test_bad_arguments(bad):
    kw = dict(doc_lens=[4, 4], cp_size=2, cp_rank=0, strategy="per_doc") | bad
    with pytest.raises(ValueError, match=str(list(bad.values())[0])):
        shard_positions(**kw)
    with pytest.raises(ValueError, match="doc_lens\\[1\\]=0"):
        shard_positions([3, 0], 2, 0, "per_doc")


def test_mixed_worked_example_from_docstring():
    # CP=2: long means >= 2*2*128 = 512 tokens. Units [0,100) short run, [100,700) long doc,
    # [700,750) short run of two documents; rank 0 holds chunk positions 0 and 3 of each unit.
    front, back = rank_segments([100, 600, 20, 30], 2, 0, "mixed")
    assert [(s.doc, s.start, s.length) for s in front] == [(0, 0, 25), (1, 0, 150), (2, 0, 13)]
    assert [(s.doc, s.start, s.length) for s in back] == [(0, 75, 25), (1, 450, 150), (3, 18, 12)]
    assert rank_token_counts([100, 600, 20, 30], 2, "mixed") == [375, 375]


def test_mixed_is_per_doc_for_long_and_per_seq_for_short_documents():
    long_docs = [600, 1200, 512]  # all >= 512 at CP=2
    for r in range(2):
        assert (shard_positions(long_docs, 2, r, "mixed")
                == shard_positions(long_docs, 2, r, "per_doc"))
    short = [100, 7, 300, 41]  # all short, total 448 = 112 x 4
    for r in range(2):
        assert shard_positions(short, 2, r, "mixed") == shard_positions(short, 2, r, "per_seq")


def test_mixed_balances_a_long_document_among_short_ones():
    lens = [300] * 10 + [6000] + [200] * 9
    lens[-1] += -sum(lens) % 8
    pm = rank_attention_pairs(lens, 4, "mixed")
    ps = rank_attention_pairs(lens, 4, "per_seq")
    assert max(pm) * 4 / sum(pm) < 1.02 < max(ps) * 4 / sum(ps)
