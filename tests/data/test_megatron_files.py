"""Datasets as Megatron-LM's own ``tools/preprocess_data.py`` writes them, made here with
megatron-core's ``IndexedDatasetBuilder`` directly (not our preprocessing): no ``.meta.json``
sidecar, documents of several sequences (``--split-sentences``), EOD appended or not."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

from tests.helpers.torchrun import DATA_CACHE, launch_pretrain
from wlb.megatron.indexed import IndexedDataError, IndexedDocuments, meta_path
from wlb.megatron.replica import CPU_FLAGS
from wlb.preprocess.tokenizer import NullTokenizer

EOD = 50  # NullTokenizer(--vocab-size 50): ids 0..49, EOD 50, vocabulary 51


def _write(prefix: str, docs: list[list[list[int]]]) -> None:
    """Each document a list of sequences, as Megatron-LM's preprocessing adds them."""
    builder = IndexedDatasetBuilder(prefix + ".bin", dtype=np.uint16)
    for doc in docs:
        flat = [t for s in doc for t in s]
        builder.add_document(torch.tensor(flat, dtype=torch.int64), [len(s) for s in doc])
    builder.finalize(prefix + ".idx")


DOCS = [[[1, 2, 3], [4, 5]],  # two sentences, no EOD (--split-sentences, no --append-eod)
        [[6, 7, 8, 9, EOD]],  # one sequence ending with EOD (--append-eod)
        [[10]]]


def test_documents_are_the_indexs_documents_read_across_their_sequences(tmp_path):
    prefix = str(tmp_path / "megatron_text_sentence")
    _write(prefix, DOCS)
    docs = IndexedDocuments(prefix, NullTokenizer(50))
    assert (docs.vocab_size, docs.eod) == (51, EOD)
    assert docs.lengths.tolist() == [5, 5, 1]
    assert docs.tokens(0, 1, 4).tolist() == [2, 3, 4]  # across the sentence boundary
    assert docs.tokens(1, 0, 5).tolist() == [6, 7, 8, 9, EOD]
    assert docs.tokens(2, 0, 1).tolist() == [10] and docs.tokens(0, 0, 5).dtype == np.int64


def test_without_a_sidecar_the_tokenizer_is_needed_and_with_one_they_must_agree(tmp_path):
    prefix = str(tmp_path / "megatron_text_document")
    _write(prefix, DOCS)
    with pytest.raises(IndexedDataError, match="no .*meta.json .*--tokenizer-type"):
        IndexedDocuments(prefix)
    with open(meta_path(prefix), "w") as f:  # our sidecar: enough alone, checked against flags
        json.dump({"vocab_size": 51, "eod": EOD}, f)
    assert IndexedDocuments(prefix).lengths.tolist() == [5, 5, 1]
    assert IndexedDocuments(prefix, NullTokenizer(50)).eod == EOD
    with pytest.raises(IndexedDataError, match=r"vocab_size=51, eod=50 \(its .meta.json\) but "
                                               r"the --tokenizer-type flags give "
                                               r"vocab_size=61, eod=60"):
        IndexedDocuments(prefix, NullTokenizer(60))


@pytest.mark.slow
def test_a_run_trains_on_megatron_lms_files_given_the_tokenizer_flags(tmp_path):
    prefix = str(tmp_path / "corpus_text_document")
    rng = np.random.default_rng(0)
    # 300 documents of 1-3 sentences, some with EOD
    _write(prefix, [[list(rng.integers(0, EOD, int(rng.integers(5, 60)))) for _ in
                     range(int(rng.integers(1, 4)))] + ([[EOD]] if i % 2 else [])
                    for i in range(300)])
    flags = [*CPU_FLAGS, "--data-path", prefix, "--seq-length", "256", "--max-position-embeddings",
             "256", "--global-batch-size", "4", "--micro-batch-size", "1", "--num-layers", "2",
             "--hidden-size", "32", "--num-attention-heads", "2", "--attention-dropout", "0",
             "--train-iters", "2", "--lr", "1e-3", "--lr-decay-iters", "10", "--eval-iters",
             "0", "--eval-interval", "1000", "--wlb-packing", "wlb", "--wlb-outlier-thresholds",
             "none", "--data-cache-path", DATA_CACHE, "--log-json", str(tmp_path / "log.jsonl")]
    # Megatron-LM's own default tokenizer (GPT2BPETokenizer) needs its vocabulary files
    refused = launch_pretrain(flags + ["--preflight-only"])
    assert refused.returncode == 2 and "vocab" in refused.stderr.strip(), refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    # megatron-core 0.19's NullTokenizer(V): ids below V - 1, EOD V - 1
    ok = launch_pretrain(flags + ["--tokenizer-type", "NullTokenizer", "--vocab-size", "51"],
                         torchrun=True)
    assert ok.returncode == 0, ok.stderr[-2000:]
    rows = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [1, 2] and all(r["tokens"] > 0 for r in rows)
    assert all(np.isfinite(r["lm_loss"]) for r in rows)
