"""--split and weighted --data-path: against megatron-core's own helpers; weights in tokens."""

from __future__ import annotations

import numpy as np
import pytest

from wlb.data.blend import BlendError, blend_split, parse_blend
from wlb.data.sources import ConcatDocuments, DocumentView, MockDocuments
from wlb.data.split import SplitError, parse_split, split_ranges


@pytest.mark.parametrize("split", ["969,30,1", "100,0,0", "98,2", "1,1,1", "7", "949,50,1",
                                   "0.5, 0.25, 0.25", "0,1,0"])
@pytest.mark.parametrize("n", [1, 3, 10, 997])
def test_split_ranges_equal_megatron_core(split, n):
    cfg = pytest.importorskip("megatron.core.datasets.blended_megatron_dataset_config")
    vector = cfg.parse_and_normalize_split(split)
    assert parse_split(split) == vector
    # megatron-core's builder: documents [round(lo * n), round(hi * n)) of each book-end
    want = [None if b is None else (int(round(b[0] * n)), int(round(b[1] * n)))
            for b in cfg.convert_split_vector_to_split_matrix(vector)]
    assert split_ranges(parse_split(split), n) == want


def test_split_ranges_by_hand():
    assert split_ranges(parse_split("969,30,1"), 1000) == [(0, 969), (969, 999), (999, 1000)]
    assert split_ranges(parse_split("90,10"), 7) == [(0, 6), (6, 7), None]


@pytest.mark.parametrize("bad", ["", "a,b", "1,2,3,4", "0,0,0", "-1,2"])
def test_bad_split_is_named(bad):
    with pytest.raises(SplitError, match="--split"):
        parse_split(bad)


@pytest.mark.parametrize("items", [["30", "A", "70", "B"], ["A", "B"], ["A"], ["1", "A"],
                                   ["A", "B", "C"], ["0.2", "A", "0.2", "B", "0.6", "C"]])
def test_parse_blend_equals_megatron_core(items):
    utils = pytest.importorskip("megatron.core.datasets.utils")
    prefixes, weights = utils.get_blend_from_list(items)
    ours = parse_blend(items)
    assert ours[0] == prefixes
    if weights is None:
        assert ours[1] is None
    else:
        assert ours[1] == pytest.approx(utils.normalize(weights))


@pytest.mark.parametrize("items", [[], ["-1", "A", "2", "B"], ["0", "A", "0", "B"]])
def test_bad_blend_is_named(items):
    with pytest.raises(BlendError, match="--data-path"):
        parse_blend(items)


def _sizes(seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(5, 200, size=n) for n in (300, 120, 40)]


@pytest.mark.parametrize("weights", [[0.3, 0.5, 0.2], [0.1, 0.1, 0.8], [1.0, 0.0, 0.0]])
def test_blend_honours_the_weights_in_tokens(weights):
    sizes = _sizes()
    split = parse_split("90,10,0")
    ids = blend_split(sizes, weights, split, 0, seed=3)
    flat = np.concatenate(sizes)
    starts = np.cumsum([0] + [len(s) for s in sizes])
    owner = np.searchsorted(starts, ids, side="right") - 1
    total = sum(int(s[: split_ranges(split, len(s))[0][1]].sum()) for s in sizes)
    for k, w in enumerate(weights):
        got = int(flat[ids[owner == k]].sum())
        assert abs(got - w * total) <= 200  # within one document of the target
        # only documents of dataset k's own train split
        lo, hi = split_ranges(split, len(sizes[k]))[0]
        assert ((ids[owner == k] - starts[k] >= lo) & (ids[owner == k] - starts[k] < hi)).all()


def test_oversampled_dataset_repeats_whole_passes():
    sizes = [np.full(10, 10), np.full(10, 100)]  # 100 and 1000 tokens
    ids = blend_split(sizes, [0.5, 0.5], [1.0, 0.0, 0.0], 0, seed=0)
    counts = np.bincount(ids[ids < 10], minlength=10)
    assert (counts >= 5).all()  # 550 tokens from a 100-token dataset: 5 passes + a subset


def test_plain_list_is_the_concatenation_and_valid_is_disjoint():
    sizes = _sizes()
    split = parse_split("80,20")
    train = blend_split(sizes, None, split, 0, seed=0)
    valid = blend_split(sizes, None, split, 1, seed=0)
    assert len(set(train)) == len(train) and not set(train) & set(valid)
    assert len(train) + len(valid) == sum(len(s) for s in sizes)


def test_concat_and_view_address_the_right_documents():
    a = MockDocuments([10, 20], 5, vocab_size=50, seed=1)
    b = MockDocuments([30], 4, vocab_size=50, seed=2)
    cat = ConcatDocuments([a, b])
    np.testing.assert_array_equal(cat.tokens(6, 0, 5), b.tokens(1, 0, 5))
    np.testing.assert_array_equal(cat.tokens(4, 2, 7), a.tokens(4, 2, 7))
    view = DocumentView(cat, np.array([7, 0, 7]))
    assert view.lengths.tolist() == [b.lengths[2], a.lengths[0], b.lengths[2]]
    np.testing.assert_array_equal(view.tokens(1, 0, 3), a.tokens(0, 0, 3))
    with pytest.raises(ValueError, match="vocab_size=60"):
        ConcatDocuments([a, MockDocuments([10], 2, vocab_size=60)])
