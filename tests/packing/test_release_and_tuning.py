"""Hand-computed cases for the match release, leftover filling, outlier auto-tuning and the
simulator's summary (the mutants mutation testing found alive in them)."""

from __future__ import annotations

import numpy as np
import pytest

from wlb.cost_model import CostModel
from wlb.packing.autotune import _threshold_for_ratio, auto_tune_outliers, candidate_settings
from wlb.packing.placement import Bins, fill_leftovers
from wlb.packing.release import match_release
from wlb.packing.simulate import SimResult, simulate
from wlb.packing.types import Piece
from wlb.packing.wlb import WLBPacker

# W(d) = d^2 / 100 + d: the docstring example of match_release
QUAD = CostModel(attn_coef=0.01, linear_coef=1.0, doc_coef=0.0)
W = QUAD.doc_workload


def _release(lengths, ages=None, *, n=2, cap=200, rho=1.0, tol=0.01, max_wait=32):
    ages = ages or [0] * len(lengths)
    return match_release([W(x) for x in lengths], lengths, ages, n=n, cap=cap, rho=rho,
                         tol=tol, max_wait=max_wait)


def test_match_release_docstring_example_pairs_a_90_with_a_70():
    # T = W(128) = 291.84; a lone 90 reaches 171 + 110 = 281 < T / 1.01; 90 + 70 = 290 fits
    assert _release([128, 90, 70]) == [[0], [1, 2]]


def test_heads_are_tried_heaviest_first_whatever_the_pool_order():
    assert _release([90, 128, 70]) == [[1], [0, 2]]


def test_match_release_bounds_are_inclusive():
    lin = CostModel(attn_coef=0.0, linear_coef=1.0, doc_coef=0.0)  # integer workloads
    kw = {"n": 2, "cap": 200, "rho": 0.0, "tol": 0.0, "max_wait": 32}
    rel = lambda ls: match_release([lin.doc_workload(x) for x in ls], ls, [0] * len(ls), **kw)  # noqa: E731
    assert rel([100, 100]) == [[0], [1]]  # a single slot exactly at T = T / (1 + 0) = T x 1
    assert rel([100, 60, 40]) == [[0], [1, 2]]  # a pair exactly at T


def test_match_release_waits_when_no_group_balances():
    # the 128 finds no companion (two 90s, W 342, overshoot T * 1.01), but the next head, a 90,
    # is matched by the other 90
    assert _release([128, 90, 90]) == [[1], [2]]
    # a 60 (W 96) can neither reach the 128 nor be reached: nothing is released
    assert _release([128, 60]) == []
    assert _release([]) == []


def test_a_single_document_slot_reaches_the_head_with_filler():
    # the 120 (W 264) plus (200 - 120) filler tokens = 344 >= T / 1.01: one slot by itself
    assert _release([128, 120]) == [[0], [1]]
    # rho 0: no filler, so the 120 alone cannot reach it (and no pair exists)
    assert _release([128, 120], rho=0.0) == []


def test_only_n_minus_one_companions_are_taken():
    assert _release([128, 127, 126, 125], n=2) == [[0], [1]]
    assert _release([128, 127, 126, 125], n=3) == [[0], [1], [2]]


def test_a_head_that_cannot_be_matched_passes_to_the_next_heaviest():
    # 190 (W 551): no companion reaches it; the 128 with the 127 does
    assert _release([190, 128, 127]) == [[1], [2]]


def test_overdue_document_is_released_with_the_best_group_balanced_or_not():
    assert _release([128, 90, 90], ages=[0, 0, 32]) == [[2], [1]]  # the 90s match each other
    assert _release([128], ages=[32]) == [[0]]  # forced alone
    assert _release([128], ages=[31]) == []  # one iteration short of max_wait
    # equal ages: the first index is the oldest
    assert _release([128, 128], ages=[40, 40], n=3) == [[0], [1]]


def test_a_pair_over_the_token_cap_is_not_a_slot():
    # no filler (rho 0): W(160) = 416; the 120 and the 84 (W 264 + 154.56 = 418.56) match it,
    # but 120 + 84 = 204 tokens is over a cap of 200
    assert _release([160, 120, 84], rho=0.0) == []
    assert _release([160, 120, 84], rho=0.0, cap=204) == [[0], [1, 2]]


def test_each_document_is_in_one_pair_only():
    got = _release([128, 90, 70, 90, 70], n=3)
    assert got == [[0], [1, 3], [2, 4]] or got == [[0], [1, 2], [3, 4]]
    flat = [i for g in got for i in g]
    assert len(flat) == len(set(flat))


def test_wlb_match_uses_the_batch_workload_per_token_as_filler_density():
    packer = WLBPacker(2, 160, QUAD, max_tokens=200, outlier_thresholds=[60], release="match",
                       balance_tol=0.01, max_wait=32)
    for d in (128, 90, 70):
        packer.queues.push(Piece(d, 0, d, 0))
    base = [Piece(1000, 0, 10, 0), Piece(1001, 0, 30, 0)]
    rho = (W(10) + W(30)) / 40
    want = match_release([W(128), W(90), W(70)], [128, 90, 70], [0, 0, 0], n=2, cap=200,
                         rho=rho, tol=0.01, max_wait=32)
    chosen = packer._match(base)
    assert [[p.length for p in g] for g in chosen] == [[[128, 90, 70][i] for i in g]
                                                       for g in want]
    assert len(packer.queues) == 3 - sum(len(g) for g in want)  # released ones dequeued
    empty = WLBPacker(2, 160, QUAD, max_tokens=200, outlier_thresholds=[60], release="match",
                      balance_tol=0.01, max_wait=32)
    assert empty._match(base) == []


def _bins(loads, tokens, cap=100):
    b = Bins(len(loads), cap)
    for j, (w, t) in enumerate(zip(loads, tokens)):
        b.add(j, Piece(900 + j, 0, t, 0), w)
    return b


def test_fill_leftovers_places_without_raising_the_heaviest():
    lin = CostModel(attn_coef=0.0, linear_coef=1.0, doc_coef=0.0)
    b = _bins([50.0, 20.0, 30.0], [50, 20, 30])
    left = [Piece(1, 0, 30, 0), Piece(2, 0, 25, 0), Piece(3, 0, 10, 0)]
    still = fill_leftovers(b, left, lin)
    # 30 -> bin 1 (20 + 30 = 50 <= top 50); 25 -> bin 2 would be 55 > 50: carried; 10 -> bin 2
    assert [p.doc_id for p in still] == [2]
    assert [[p.doc_id for p in ps[1:]] for ps in b.pieces] == [[], [1], [3]]
    assert b.load == [50.0, 50.0, 40.0]


def test_fill_leftovers_may_fill_a_micro_batch_to_the_cap_exactly():
    lin = CostModel(attn_coef=0.0, linear_coef=1.0, doc_coef=0.0)
    b = _bins([90.0, 5.0], [10, 90])
    assert fill_leftovers(b, [Piece(1, 0, 10, 0)], lin) == []  # 90 + 10 = cap 100
    assert b.tokens == [10, 100]


def test_fill_leftovers_respects_the_token_cap():
    lin = CostModel(attn_coef=0.0, linear_coef=1.0, doc_coef=0.0)
    b = _bins([90.0, 5.0, 60.0], [10, 95, 10])  # bin 1 is the lightest but full of tokens
    still = fill_leftovers(b, [Piece(1, 0, 10, 0)], lin)
    assert still == [] and [p.doc_id for p in b.pieces[2]] == [902, 1]
    b = _bins([90.0, 5.0, 85.0], [10, 95, 10])  # 85 + 10 > 90: it would be the new maximum
    assert fill_leftovers(b, [Piece(1, 0, 10, 0)], lin) == [Piece(1, 0, 10, 0)]


def test_threshold_for_ratio_is_the_smallest_length_reaching_the_target():
    assert _threshold_for_ratio(CostModel(1.0, 0.0, 0.0), 300.0) == 18  # 17^2 = 289 < 300
    assert _threshold_for_ratio(CostModel(1.0, 0.0, 0.0), 324.0) == 18
    assert _threshold_for_ratio(CostModel(0.0, 2.0, 0.0), 7.0) == 4  # linear: ceil(7 / 2)
    assert _threshold_for_ratio(CostModel(0.0, 2.0, 3.0), 7.0) == 2  # 2d + 3 >= 7
    assert _threshold_for_ratio(CostModel(0.01, 1.0, 0.0), 291.84) == 128
    assert _threshold_for_ratio(CostModel(1.0, 0.0, 0.0), 0.5) == 1  # never below 1
    # a per-document constant above the target: W(1) already reaches it (was a NaN -> int error)
    assert _threshold_for_ratio(CostModel(0.0014, 2.17, 1221.4), 100.0) == 1
    assert _threshold_for_ratio(CostModel(0.0, 2.0, 50.0), 50.0) == 1
    assert _threshold_for_ratio(CostModel(1.0, 0.0, 10.0), 9.5) == 1  # no real root
    assert _threshold_for_ratio(CostModel(0.0, 2.0, 0.0), 1.0) == 1  # linear, ceil(0.5)
    for a, b, c, t in [(0.5, 3.0, 1.0, 1000.0), (0.001, 1.0, 5.0, 77.7)]:
        cost = CostModel(a, b, c)
        d = _threshold_for_ratio(cost, t)
        assert cost.doc_workload(d) >= t > cost.doc_workload(d - 1)


def test_candidate_settings_by_hand():
    lin = CostModel(attn_coef=0.0, linear_coef=1.0, doc_coef=0.0)  # W(d) = d
    cands = candidate_settings(np.full(50, 10), lin, 4, 100, "count", 125)
    # L1 = f x 100 tokens for f in 0.3, 0.45, 0.6, 0.8, 1.0; levels split [L1, 125) geometrically
    l1s = [c[0][0] for c in cands]
    assert sorted(set(l1s)) == [30, 45, 60, 80, 100]
    assert ([30], 0.01, 8) in cands and ([30], 0.01, 32) in cands
    assert ([30, 61], 0.01, 8) in cands  # geomspace(30, 125, 3) = 30, 61.2, 125
    assert ([30, 48, 77], 0.01, 32) in cands
    assert ([30, 42, 61, 87], 0.01, 8) in cands
    assert len(cands) == 5 * 4 * 2
    match = candidate_settings(np.full(50, 10), lin, 4, 100, "match", 125)
    assert match[:6] == [([30], tol, wait) for tol in (0.01, 0.02) for wait in (8, 16, 32)]
    assert len(match) == 5 * 6


def test_candidate_settings_fall_back_to_fractions_of_s_max():
    # a per-document constant that dwarfs everything, on one-token pieces: a micro-batch's
    # average work is 100 x 1001, so every L1 (the length reaching a fraction of it) would be
    # far above S_max = 125: L1 falls back to 0.25, 0.4, 0.6 x 125
    cost = CostModel(attn_coef=0.0, linear_coef=1.0, doc_coef=1000.0)
    cands = candidate_settings(np.ones(20, dtype=np.int64), cost, 4, 100, "count", 125)
    assert sorted({c[0][0] for c in cands}) == [31, 50, 75]
    tiny = candidate_settings(np.ones(20, dtype=np.int64), cost, 4, 4, "count", 4)
    assert sorted({c[0][0] for c in tiny}) == [1, 2]  # int(0.25 x 4) = 1, int(0.6 x 4) = 2


def test_candidate_settings_keep_l1_below_s_max():
    lin = CostModel(attn_coef=0.0, linear_coef=1.0, doc_coef=0.0)
    # S = S_max = 100 and every piece is S_max long: f = 1.0 gives L1 = 100 = S_max, dropped
    cands = candidate_settings(np.full(10, 500), lin, 4, 100, "count", 100)
    assert sorted({c[0][0] for c in cands}) == [30, 45, 60, 80]


def test_auto_tune_defaults_and_its_sample_name():
    rng = np.random.default_rng(5)
    lengths = rng.integers(5, 90, size=1200)  # > 151 batches of 2 x 64 tokens
    lin = CostModel(attn_coef=0.01, linear_coef=1.0, doc_coef=0.0)
    got = auto_tune_outliers(lengths, num_microbatches=2, seq_length=64, cost_model=lin)
    want = auto_tune_outliers(lengths, num_microbatches=2, seq_length=64, cost_model=lin,
                              max_tokens=80, release="match", delay_budget=0.5,
                              num_batches=150, seed=0)
    assert got == want
    assert got.candidates == len(candidate_settings(lengths, lin, 2, 64, "match", 80))
    with pytest.raises(Exception, match="auto-tune sample: document 1 has length 0"):
        auto_tune_outliers([3, 0], num_microbatches=2, seq_length=64, cost_model=lin)


def test_candidate_settings_count_long_documents_as_s_max_pieces():
    sq = CostModel(attn_coef=1.0, linear_coef=0.0, doc_coef=0.0)  # W(d) = d^2
    lengths = np.array([10] * 9 + [10_000])
    cands = candidate_settings(lengths, sq, 4, 100, "count", 125)
    # pieces [10] x 9 + [125]: 16525 work / 215 tokens per token; f = 0.3 of 100 tokens of it
    per_token = (9 * 100 + 125**2) / (9 * 10 + 125)
    assert min(c[0][0] for c in cands) == _threshold_for_ratio(sq, 0.3 * 100 * per_token) == 49


def test_auto_tune_picks_the_most_balanced_within_the_budget():
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 400, size=600)
    lin = CostModel(attn_coef=0.01, linear_coef=1.0, doc_coef=0.0)
    kw = {"num_microbatches": 4, "seq_length": 256, "cost_model": lin, "max_tokens": 300,
          "release": "count", "num_batches": 20, "seed": 1}
    for budget in (0.2, 1.0, 1e-9):
        got = auto_tune_outliers(lengths, delay_budget=budget, **kw)
        rows = []
        for ths, tol, wait in candidate_settings(lengths, lin, 4, 256, "count", 300):
            packer = WLBPacker(4, 256, lin, max_tokens=300, outlier_thresholds=ths,
                               release="count", balance_tol=tol, max_wait=wait)
            s = simulate(lengths, packer, 20, shuffle=True, seed=1).summary()
            rows.append((s["imbalance_mean"], s["delay_iters_mean"], ths, tol, wait))
        within = [r for r in rows if r[1] <= budget]
        best = min(within, key=lambda r: (r[0], r[1])) if within else min(
            rows, key=lambda r: (r[1], r[0]))
        assert (got.imbalance_mean, got.delay_iters_mean) == best[:2]
        assert (got.thresholds, got.balance_tol, got.max_wait) == best[2:]
        assert got.candidates == len(rows)


def test_sim_result_summary_by_hand():
    r = SimResult("wlb", imbalances=[1.0, 1.5, 2.0, 1.1], pack_ms=[2.0, 4.0],
                  tokens=[100, 300], delay_token_sum=50.0, delay_max=3, trained_tokens=200,
                  flush_batches=1, data_exhausted=True,
                  ledger={"docs_pending": 2, "pending_tokens": 40, "consumed_tokens": 240,
                          "trained_tokens": 200})
    s = r.summary()
    assert s == {
        "packer": "wlb", "num_batches": 4, "imbalance_mean": pytest.approx(1.4),
        "imbalance_p50": pytest.approx(1.3), "imbalance_p99": pytest.approx(1.985),
        "imbalance_max": 2.0, "delay_iters_mean": 0.25, "delay_iters_max": 3,
        "pack_ms_mean": 3.0, "pack_ms_max": 4.0, "tokens_per_batch_mean": 200.0,
        "docs_pending_at_end": 2, "tokens_pending_at_end": 40, "flush_batches": 1,
        "data_exhausted": True, "ledger_ok": True,
    }
    assert SimResult("y", trained_tokens=1, delay_token_sum=3.0).summary()[
        "delay_iters_mean"] == 3.0
    empty = SimResult("x").summary()
    assert (empty["pack_ms_mean"], empty["pack_ms_max"], empty["tokens_per_batch_mean"],
            empty["delay_iters_mean"], empty["docs_pending_at_end"],
            empty["tokens_pending_at_end"], empty["ledger_ok"]) == (0.0, 0.0, 0.0, 0.0, 0, 0,
                                                                    False)
