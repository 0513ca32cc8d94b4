"""The array CP index math and the array latency predictor against their loop versions
(``tests/helpers/shard_reference.py``): the same segments, the same predictions and choices."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers.shard_reference import reference_predict, reference_segments, reference_tput
from wlb.cp.selector import DEFAULT_TABLE, KernelTable, choose_strategy
from wlb.cp.shard import rank_segments, segment_arrays
from wlb.cp.strategy import ALL_STRATEGIES

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TABLE = KernelTable.from_json(DEFAULT_TABLE)
# short and long documents, so that mixed makes runs of short ones between long ones
docs_st = st.lists(st.one_of(st.integers(1, 40), st.integers(200, 3000)), min_size=1,
                   max_size=30)


@settings(max_examples=60, deadline=None)
@given(doc_lens=docs_st, cp=st.integers(1, 8), strategy=st.sampled_from(ALL_STRATEGIES))
def test_segments_are_the_loop_versions(doc_lens, cp, strategy):
    for r in range(cp):
        front, back = reference_segments(doc_lens, cp, r, strategy)
        assert rank_segments(doc_lens, cp, r, strategy) == (tuple(front), tuple(back))
    seg = segment_arrays(doc_lens, cp, strategy)
    assert np.all(np.diff(seg.rank) >= 0)  # storage order: rank by rank
    assert sorted(seg.positions().tolist()) == list(range(sum(doc_lens)))


@settings(max_examples=60, deadline=None)
@given(q=st.floats(0.5, 300_000), kv=st.floats(0.5, 300_000))
def test_throughput_is_the_scalar_interpolation(q, kv):
    assert TABLE._tput(q, kv) == pytest.approx(reference_tput(TABLE, q, kv), rel=1e-12)


def test_nan_cells_and_a_one_point_grid_as_the_scalar_version():
    nan = float("nan")
    t = KernelTable("t", 128, (1, 8, 64), (8, 64, 512),
                    ((nan, 2.0, 4.0), (nan, nan, 8.0), (nan, nan, nan)))
    for q, kv in ((1, 8), (8, 8), (30, 40), (64, 10), (64, 512), (500, 9), (2, 600)):
        assert t._tput(q, kv) == pytest.approx(reference_tput(t, q, kv), rel=1e-12), (q, kv)
    one = KernelTable("t", 1, (4,), (4,), ((3.0,),))
    assert one._tput(100, 7) == pytest.approx(reference_tput(one, 100, 7)) == 3.0


def test_predictions_and_choices_on_the_wlbllm_lengths():
    """Micro-batches drawn from the real length sample at 8K-128K, CP 2-16: per-rank predictions
    within 1e-9 of the loop version and the same adaptive choice every time."""
    with open(os.path.join(ROOT, "data", "doc_lengths", "doc_lengths_wlbllm.json")) as f:
        sample = np.asarray(json.load(f), dtype=np.int64)
    rng = np.random.default_rng(3)
    for trial in range(40):
        budget = int(rng.choice([8192, 32768, 131072]))
        lens = rng.choice(sample, size=400)
        lens = lens[np.cumsum(lens) <= budget].tolist() or [budget]
        cp = int(rng.choice([2, 4, 8, 16]))
        for s in ALL_STRATEGIES:
            np.testing.assert_allclose(TABLE.predict(lens, cp, s),
                                       reference_predict(lens, cp, s, TABLE), rtol=1e-9)
        want = min(ALL_STRATEGIES, key=lambda s: (max(reference_predict(lens, cp, s, TABLE)), s))
        assert choose_strategy(lens, cp, TABLE, ALL_STRATEGIES)[0] == want, (trial, cp)
