"""Algorithm 1 (WLB-LLM §4.2) pinned by hand-computed cases: each fails if a rule changes.

Cost W(d) = d^2 throughout (attention only), so workload and tokens disagree on purpose.
"""

from __future__ import annotations

from wlb.cost_model import CostModel
from wlb.packing import build_packer
from wlb.packing.base import default_max_tokens
from wlb.packing.placement import Bins, greedy_place
from wlb.packing.queues import OutlierQueues
from wlb.packing.types import Piece

SQ = CostModel(attn_coef=1.0, linear_coef=0.0)


def _pieces(lengths, arrival=0):
    return [Piece(i, 0, d, arrival) for i, d in enumerate(lengths)]


def _lens(mbs):
    return [[p.length for p in mb] for mb in mbs]


def test_bin_rule_is_least_workload_not_fewest_tokens():
    # 50 -> bin 0 (2500). Each 30 then goes to the least-*workload* bin: bin 1 holds 900, 1800,
    # 2700 after them, always below 2500 before the add. A fewest-*tokens* rule would send the
    # third 30 to bin 0 (50 < 60 tokens): [50, 30] | [30, 30].
    bins = Bins(2, cap=100)
    left = greedy_place(_pieces([50, 30, 30, 30]), [SQ.doc_workload(d) for d in (50, 30, 30, 30)],
                        bins)
    assert left == [] and _lens(bins.pieces) == [[50], [30, 30, 30]]
    assert bins.load == [2500.0, 2700.0] and bins.tokens == [50, 90]


def test_full_least_workload_bin_falls_back_to_the_fewest_token_bin():
    # 90 -> bin 0 (8100, 90 tok); 20 -> bin 1 (400); 20 -> bin 1 (800, 40 tok); 70: least
    # workload is bin 1 (40 + 70 > 100: no), fewest tokens is bin 1 too -> carried over;
    # 10: least workload bin 1 fits -> bin 1.
    bins = Bins(2, cap=100)
    left = greedy_place(_pieces([90, 20, 20, 70, 10]),
                        [SQ.doc_workload(d) for d in (90, 20, 20, 70, 10)], bins)
    assert _lens(bins.pieces) == [[90], [20, 20, 10]] and [p.length for p in left] == [70]


def test_new_pieces_are_placed_longest_first():
    # sorted: 50, 30, 30, 30, 10 -> [50, 10] | [30, 30, 30]. In arrival order (10 first) the
    # result would be [10, 30, 30, 30] | [50].
    p = build_packer("wlb-paper", num_microbatches=2, seq_length=80, cost_model=SQ,
                     max_tokens=101, outlier_thresholds=[])
    assert _lens(p.pack(_pieces([10, 50, 30, 30, 30]))) == [[50, 10], [30, 30, 30]]


def test_paper_capacity_test_is_strict():
    # one micro-batch of S_max = 100: 60 fits; 60 + 40 == 100 is not < 100 under the paper's
    # rule, so 40 is carried over; the default rule (<=) places it.
    strict = build_packer("wlb-paper", num_microbatches=1, seq_length=80, cost_model=SQ,
                          max_tokens=100, outlier_thresholds=[])
    assert _lens(strict.pack(_pieces([60, 40]))) == [[60]]
    assert [q.length for q in strict.pending()] == [40]
    bins = Bins(1, cap=100)
    assert greedy_place(_pieces([60, 40]), [3600.0, 1600.0], bins) == []
    assert bins.tokens == [100]


def test_default_s_max_and_the_pieces_it_cuts():
    assert default_max_tokens(4096) == 5120 and default_max_tokens(100) == 125
    p = build_packer("wlb", num_microbatches=2, seq_length=100, cost_model=SQ)
    assert p.max_tokens == 125 and p.max_piece == 125
    paper = build_packer("wlb-paper", num_microbatches=2, seq_length=100, cost_model=SQ)
    assert paper.max_tokens == 125 and paper.max_piece == 124  # strict: cut below S_max


def test_a_level_releases_exactly_n_pieces_fifo():
    q = OutlierQueues([100, 200], release_count=3)
    for i, d in enumerate([150, 250, 120, 160]):  # level 0: 150, 120, 160; level 1: 250
        assert q.push(Piece(i, 0, d, i))
    assert not q.push(Piece(9, 0, 99, 0))  # below L_1: not an outlier
    out = q.pop_ready()
    assert [p.length for p in out] == [150, 120, 160]  # level 0 holds 3 = N: all of them
    assert [p.length for p in q.pending()] == [250]  # level 1 holds 1 < N: stays
    q.push(Piece(10, 0, 130, 5))
    q.push(Piece(11, 0, 140, 5))
    assert q.pop_ready() == []  # 2 < 3
    q.push(Piece(12, 0, 110, 6))
    q.push(Piece(13, 0, 105, 6))
    assert [p.length for p in q.pop_ready()] == [130, 140, 110]  # N of the 4, oldest first
    assert sorted(p.length for p in q.pending()) == [105, 250]


def test_stock_dp_dealing_interleaves_like_megatrons_sampler():
    """MegatronPretrainingSampler with micro-batch size 1 gives rank r the r-th of every DP
    consecutive samples: sample j -> rank j % DP (not contiguous blocks)."""
    from wlb.packing.schedule import deal_to_dp_ranks

    p = build_packer("megatron", num_microbatches=6, seq_length=8, cost_model=SQ)
    mbs = [[Piece(j, 0, 8, 0)] for j in range(6)]
    assert deal_to_dp_ranks(mbs, 2, p, balance=False) == [0, 1, 0, 1, 0, 1]
    assert deal_to_dp_ranks(mbs, 3, p, balance=False) == [0, 1, 2, 0, 1, 2]
    assert deal_to_dp_ranks(mbs, 1, p, balance=False) == [0] * 6
