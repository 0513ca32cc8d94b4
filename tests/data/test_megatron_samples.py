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


class _Tokenizer:
    """The least of a tokenizer GPTDatasetConfig reads."""

    eod, vocab_size, unique_identifiers = 63, 64, {"class": "test"}


@pytest.mark.parametrize("num_samples", [10, 70, 80, 100])  # 1 epoch; 2, final apart; 2; 3
def test_stock_sample_order_equals_megatron_gpt_dataset(tmp_path, num_samples):
    """Document, sample and shuffle indices equal those of a megatron-core GPTDataset built on
    the same documents and seed; each global batch is N of its samples in shuffled order."""
    gpt = pytest.importorskip("megatron.core.datasets.gpt_dataset")
    from megatron.core.datasets.indexed_dataset import IndexedDataset
    from megatron.core.datasets.utils import Split

    from wlb.megatron.indexed import write_documents
    from wlb.packing.stock_samples import StockSampleBatcher

    rng = np.random.default_rng(0)
    prefix = str(tmp_path / "docs")
    docs = [rng.integers(0, 50, size=int(n)) for n in rng.integers(1, 40, size=30)]
    write_documents(prefix, docs, vocab_size=64, eod=63, tokenizer="test")
    data = IndexedDataset(prefix)
    cfg = gpt.GPTDatasetConfig(
        random_seed=5, sequence_length=16, blend=([prefix], None), split="100,0,0",
        tokenizer=_Tokenizer(), reset_position_ids=False, reset_attention_mask=False,
        eod_mask_loss=False, add_extra_token_to_sequence=False, path_to_cache=None,
        mmap_bin_files=False)
    ref = gpt.GPTDataset(data, prefix, np.arange(len(data), dtype=np.int32), num_samples,
                         Split.train, cfg)
    ours = StockSampleBatcher(data.sequence_lengths, 4, 16, num_samples, seed=5)
    np.testing.assert_array_equal(ours.doc_index, ref.document_index)
    np.testing.assert_array_equal(ours.sample_index, ref.sample_index)
    np.testing.assert_array_equal(ours.shuffle, ref.shuffle_index)

    def tokens(pieces):
        return np.concatenate([data.get(d, o, n) for d, o, n in pieces])

    packer = build_packer("megatron", num_microbatches=4, seq_length=16,
                          cost_model=CostModel.default())
    for b in range(3):
        mbs = packer.pack(ours.next_batch())
        for j, mb in enumerate(mbs):
            want = ref[int(b * 4 + j)]["tokens"].numpy()  # GPTDataset's sample, shuffled
            got = tokens([(p.doc_id, p.offset, p.length) for p in mb])
            np.testing.assert_array_equal(got, want)


def test_a_stock_run_trains_megatron_sample_order():
    """The baseline's schedule (built from its flags) trains GPTDataset's sample order over
    --train-iters x --global-batch-size samples, dealt to DP ranks as Megatron's sampler does;
    --no-wlb-shuffle keeps the stream order."""
    from tests.helpers.lm_runs import run_config as parse
    from wlb.host.build import build_schedule, make_cost_model
    from wlb.host.documents import build_documents
    from wlb.megatron.indexed import IndexedDocuments
    from wlb.packing.stock_samples import StockSampleBatcher

    flags = ["--mock-data", "--mock-num-docs", "300", "--seq-length", "64",
             "--global-batch-size", "4", "--train-iters", "20", "--seed", "9",
             "--wlb-packing", "megatron", "--wlb-cp-sharding", "per-seq"]
    for extra, shuffled in (([], True), (["--no-wlb-shuffle"], False)):
        cfg = parse(flags + extra)
        layout = cfg.layout(2)  # DP = 2
        docs = build_documents(cfg.data, cfg.model, cfg.training.seed,
                               open_dataset=IndexedDocuments)
        cost = make_cost_model(cfg.model, cfg.wlb, layout, 256)
        schedule, _, _ = build_schedule(cfg, layout, docs.train, cost)
        assert isinstance(schedule.batcher, StockSampleBatcher) == shuffled
        if not shuffled:
            continue
        ref = StockSampleBatcher(docs.train.lengths, 4, 64, 80, 9)
        for _ in range(3):
            plan = schedule.next_plan()
            want = [[(d, o, n) for d, o, n, _ in ref.sample_pieces(int(s))]
                    for s in ref.shuffle[plan.step * 4:(plan.step + 1) * 4]]
            assert [[(p.doc_id, p.offset, p.length) for p in mb]
                    for mb in plan.microbatches] == want
            assert plan.dp_ranks == [0, 1, 0, 1]


def _two_datasets(tmp_path):
    from wlb.megatron.indexed import write_documents

    rng = np.random.default_rng(0)
    prefixes = []
    for k, n in enumerate((30, 50)):
        prefix = str(tmp_path / f"ds{k}")
        write_documents(prefix, [rng.integers(0, 50, size=int(x))
                                 for x in rng.integers(1, 40, size=n)],
                        vocab_size=64, eod=63, tokenizer="test")
        prefixes.append(prefix)
    return prefixes


def test_stock_blend_equals_megatron_blended_dataset(tmp_path):
    """--data-path 0.3 A 0.7 B, stock arm: every sample equals megatron-core's BlendedDataset's
    (built by its BlendedMegatronDatasetBuilder over GPTDatasets), in order."""
    gpt = pytest.importorskip("megatron.core.datasets.gpt_dataset")
    from megatron.core.datasets.blended_megatron_dataset_builder import (
        BlendedMegatronDatasetBuilder,
    )

    from wlb.megatron.indexed import IndexedDocuments
    from wlb.packing.stock_samples import StockBlendBatcher, blending_index

    helpers = pytest.importorskip("megatron.core.datasets.helpers")
    for w, size in (([0.3, 0.7], 1000), ([0.2, 0.2, 0.6], 777), ([0.999, 0.001], 300)):
        which = np.zeros(size, dtype=np.int16)
        index = np.zeros(size, dtype=np.int64)
        helpers.build_blending_indices(which, index, w, len(w), size, False)
        ours = blending_index(w, size)
        np.testing.assert_array_equal(ours[0], which)
        np.testing.assert_array_equal(ours[1], index)

    prefixes = _two_datasets(tmp_path)
    cfg = gpt.GPTDatasetConfig(
        random_seed=5, sequence_length=16, blend=(prefixes, [0.3, 0.7]), split="100,0,0",
        tokenizer=_Tokenizer(), reset_position_ids=False, reset_attention_mask=False,
        eod_mask_loss=False, add_extra_token_to_sequence=False, path_to_cache=None,
        mmap_bin_files=False)
    ref, _, _ = BlendedMegatronDatasetBuilder(gpt.GPTDataset, [40, 0, 0], lambda: True,
                                              cfg).build()
    sources = [IndexedDocuments(p) for p in prefixes]
    batcher = StockBlendBatcher([s.lengths for s in sources], [0.3, 0.7], 4, 16, 40, seed=5)
    n0 = len(sources[0].lengths)
    packer = build_packer("megatron", num_microbatches=4, seq_length=16,
                          cost_model=CostModel.default())
    for b in range(10):
        for j, mb in enumerate(packer.pack(batcher.next_batch())):
            got = np.concatenate([
                sources[p.doc_id >= n0].tokens(p.doc_id - n0 * (p.doc_id >= n0), p.offset,
                                               p.offset + p.length) for p in mb])
            np.testing.assert_array_equal(got, ref[b * 4 + j]["tokens"].numpy())


def test_a_blended_run_lays_out_each_arm(tmp_path):
    """The stock arm trains the datasets' train splits with the sample-level blend; WLB a
    document blend with the weights in tokens."""
    from tests.helpers.lm_runs import run_config as parse
    from wlb.host.build import build_schedule, make_cost_model, stock_blend
    from wlb.host.documents import build_documents
    from wlb.megatron.indexed import IndexedDocuments
    from wlb.packing.stock_samples import StockBlendBatcher

    a, b = _two_datasets(tmp_path)
    flags = ["--data-path", "0.25", a, "0.75", b, "--seq-length", "16", "--global-batch-size",
             "4", "--train-iters", "5", "--split", "90,10,0", "--tokenizer-type",
             "NullTokenizer", "--vocab-size", "64"]
    for arm in (["--wlb-packing", "megatron", "--wlb-cp-sharding", "per-seq"], []):
        cfg = parse(flags + arm)
        docs = build_documents(cfg.data, cfg.model, 0, stock_blend(cfg), IndexedDocuments)
        layout = cfg.layout(1)
        schedule, _, _ = build_schedule(cfg, layout, docs.train, make_cost_model(
            cfg.model, cfg.wlb, layout, 64), docs.train_blend)
        n_a = 27  # round(0.9 x 30) train documents of the first dataset
        ids = docs.train.doc_ids
        if arm:
            assert isinstance(schedule.batcher, StockBlendBatcher)
            assert docs.train_blend[1] == [0.25, 0.75]
            assert ids.tolist() == list(range(n_a)) + list(range(30, 30 + 45))
        else:
            assert docs.train_blend is None
            lengths = docs.source.lengths
            tokens_a = int(lengths[ids[ids < 30]].sum())
            share = tokens_a / int(lengths[ids].sum())
            assert abs(share - 0.25) < 40 / int(lengths[ids].sum())  # within a document


def test_stock_batchers_resume_from_their_state():
    import json

    from wlb.packing.stock_samples import StockBlendBatcher, StockSampleBatcher

    rng = np.random.default_rng(2)
    parts = [rng.integers(1, 40, size=30), rng.integers(1, 40, size=20)]

    def makers():
        yield lambda: StockSampleBatcher(parts[0], 4, 16, 40, seed=3)
        yield lambda: StockBlendBatcher(parts, [0.4, 0.6], 4, 16, 40, seed=3)

    for make in makers():
        a = make()
        for _ in range(3):
            a.next_batch()
        state = a.state_dict()
        assert state["step"] == 3 and state["samples"] == a._size()
        b = make()
        b.load_state_dict(json.loads(json.dumps(state)))
        assert b.step == 3
        for _ in range(12):  # past num_samples: the order starts over
            assert b.next_batch() == a.next_batch()
            assert b.piece_epochs == a.piece_epochs
