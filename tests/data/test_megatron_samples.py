"""Our stock-Megatron batches equal megatron-core's own C++ sample index (GPTDataset's)."""

from __future__ import annotations

import numpy as np
import pytest

from wlb.cost_model import CostModel
from wlb.packing import GlobalBatcher, build_packer


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_megatron_packer_matches_build_sample_idx(seed):
    helpers = pytest.importorskip("megatron.core.datasets.helpers")
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 300, size=200).astype(np.int32)
    seq, n = 64, 4
    doc_idx = np.arange(len(sizes), dtype=np.int32)
    # GPTDataset's sample index; without the extra label token (labels come from documents)
    idx = helpers.build_sample_idx(sizes, doc_idx, seq, 1, int(sizes.sum()), True, False)
    starts = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
    expected = []
    for (d0, o0), (d1, o1) in zip(idx[:-1], idx[1:]):
        lo, hi = starts[d0] + o0, starts[d1] + o1  # global token range of the sample
        pieces = []
        for d in range(int(d0), len(sizes)):
            a, b = max(lo, starts[d]), min(hi, starts[d + 1])
            if a < b:
                pieces.append((d, int(a - starts[d]), int(b - a)))
            if starts[d + 1] >= hi:
                break
        expected.append(pieces)
    packer = build_packer("megatron", num_microbatches=n, seq_length=seq,
                          cost_model=CostModel.default())
    batcher = GlobalBatcher(sizes, n * seq, split_at_budget=True)
    ours = []
    while len(ours) < len(expected):
        for mb in packer.pack(batcher.next_batch()):
            ours.append([(p.doc_id, p.offset, p.length) for p in mb])
    assert ours[: len(expected)] == expected
