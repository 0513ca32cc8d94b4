"""wlb.metrics at its edges: empty and zero inputs, totals below one, integer overflow, exact
percentiles (each case kills a mutant of scripts/mutation.sh that the main tests let live)."""

from __future__ import annotations

import pytest

from wlb.metrics import imbalance, imbalance_floor, summarize

BIG = 2**62  # three of these overflow an int64 sum


def test_imbalance_edges():
    assert imbalance([]) == 1.0
    assert imbalance([0.0, 0.0]) == 1.0
    assert imbalance([5]) == 1.0
    assert imbalance([0.5, 0.25]) == pytest.approx(0.5 * 2 / 0.75)  # total below 1 still counts
    assert imbalance([3, 1]) == 1.5
    # integer workloads are summed in float64: no int64 overflow
    assert imbalance([BIG, BIG, 1]) == pytest.approx(BIG * 3 / (2 * BIG + 1))


def test_imbalance_floor_edges():
    assert imbalance_floor([], 4) == 1.0
    assert imbalance_floor([0.0], 4) == 1.0
    assert imbalance_floor([0.5, 0.25], 2) == pytest.approx(0.5 * 2 / 0.75)
    assert imbalance_floor([1.0, 1.0, 1.0, 1.0], 2) == 1.0  # perfect balance is the floor
    assert imbalance_floor([BIG, BIG, 1], 2) == pytest.approx(1.0)
    assert imbalance_floor([BIG, 1, 1], 3) == pytest.approx(BIG * 3 / (BIG + 2))
    # float64 sums: an int64 sum of these would wrap negative and report no imbalance
    assert imbalance_floor([BIG, BIG, 1], 3) == pytest.approx(BIG * 3 / (2 * BIG + 1))


def test_summarize_exact():
    assert summarize([]) == {"mean": 0.0, "p50": 0.0, "p99": 0.0, "max": 0.0}
    assert summarize([7.0]) == {"mean": 7.0, "p50": 7.0, "p99": 7.0, "max": 7.0}
    got = summarize([float(x) for x in range(101)])  # 0..100: the percentiles are the values
    assert got == {"mean": 50.0, "p50": 50.0, "p99": 99.0, "max": 100.0}
    assert summarize([BIG, BIG, BIG])["mean"] == pytest.approx(float(BIG))
