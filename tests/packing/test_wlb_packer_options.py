"""WLBPacker's options, by hand: the refine pass, the max_wait clock, and its refusals."""

from __future__ import annotations

import pytest

from wlb.cost_model import CostModel
from wlb.packing import Piece
from wlb.packing.wlb import WLBPacker

COST = CostModel(attn_coef=0.01, linear_coef=1.0, doc_coef=0.0)
LENGTHS = [14, 19, 23, 25, 7, 18, 24, 8, 10, 25]  # found by search: greedy 47.38, refine 47.21


def _max_work(mbs) -> float:
    return max(sum(COST.doc_workload(p.length) for p in mb) for mb in mbs)


def test_refine_lowers_the_heaviest_micro_batch_greedy_leaves():
    pieces = [Piece(i, 0, n, 0) for i, n in enumerate(LENGTHS)]
    got = {pl: _max_work(WLBPacker(3, 32, COST, outlier_thresholds=[], placement=pl)
                         .pack(list(pieces))) for pl in ("greedy", "refine")}
    assert got["greedy"] == pytest.approx(47.38) and got["refine"] == pytest.approx(47.21)


def test_a_lone_outlier_waits_exactly_max_wait_iterations():
    pk = WLBPacker(4, 16, COST, outlier_thresholds=[12], max_wait=2)
    out = [pk.pack([Piece(0, 0, 13, 0), Piece(1, 0, 3, 0)])]  # the outlier is queued
    for step in (1, 2, 3):
        out.append(pk.pack([Piece(10 + step, 0, 3, step)]))
    held = [any(p.doc_id == 0 for mb in mbs for p in mb) for mbs in out]
    assert held == [False, False, True, False]  # released at step 2: 2 - 0 >= max_wait
    assert pk.state_dict()["step"] == 4


def test_options_at_their_bounds_and_the_refusals():
    WLBPacker(2, 16, COST, max_tokens=16, balance_tol=0.0)  # cap = seq-length, no tolerance
    for kw, msg in (({"max_tokens": 15}, "max_tokens=15 is below seq_length=16"),
                    ({"placement": "x"}, "placement='x'; choose from"),
                    ({"release": "x"}, "release='x'; choose from"),
                    ({"balance_tol": -0.1}, "balance_tol=-0.1 must be >= 0"),
                    ({"max_wait": 0}, r"max_wait=0 must be >= 1 iteration")):
        with pytest.raises(ValueError, match=msg):
            WLBPacker(2, 16, COST, **kw)
