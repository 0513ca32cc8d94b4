"""Megatron's --tokenizer-type values, offline from local files, for preprocessing and the run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers.torchrun import ENV, ROOT
from wlb.preprocess.tokenizer import NullTokenizer, tokenizer_from_flags

TEXTS = ["def add(a, b):\n    return a + b\n", "the quick brown fox jumps over the lazy dog",
         "import numpy as np\nx = np.arange(10)\n"] * 20


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny byte-level BPE trained here: tokenizer.json, and GPT-2's vocab.json/merges.txt."""
    tokenizers = pytest.importorskip("tokenizers")
    d = tmp_path_factory.mktemp("tok")
    bpe = tokenizers.ByteLevelBPETokenizer()
    bpe.train_from_iterator(TEXTS, vocab_size=300, special_tokens=["<|endoftext|>"])
    bpe.save(str(d / "tokenizer.json"))
    bpe.save_model(str(d))  # vocab.json, merges.txt
    (d / "docs.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS[:3]))
    return d, bpe


def test_null_tokenizer_is_megatrons():
    tok = NullTokenizer(100)
    assert (tok.vocab_size, tok.eod) == (101, 100)
    assert tok.encode("3 7 99").tolist() == [3, 7, 99]
    with pytest.raises(ValueError, match="token id 100"):
        tok.encode("1 100")


@pytest.mark.parametrize("kind", ["HuggingFaceTokenizer", "GPT2BPETokenizer"])
def test_files_give_the_trained_tokenizer(files, kind):
    d, bpe = files
    tok = tokenizer_from_flags(kind, tokenizer_model=str(d), vocab_file=str(d / "vocab.json"),
                               merge_file=str(d / "merges.txt"))
    text = TEXTS[0]
    assert tok.encode(text).tolist() == bpe.encode(text).ids
    assert tok.eod == bpe.token_to_id("<|endoftext|>")
    assert tok.vocab_size == bpe.get_vocab_size()
    assert tok.decode(tok.encode(text)) == text


def test_a_missing_tokenizer_file_is_named(tmp_path):
    with pytest.raises(ValueError, match="--tokenizer-model .*nothing.json"):
        tokenizer_from_flags("HuggingFaceTokenizer", tokenizer_model=str(tmp_path /
                                                                          "nothing.json"))


def _preprocess(*args):
    return subprocess.run([sys.executable, "-m", "tools.preprocess_data", *args],
                          capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=300)


def test_preprocess_and_train_with_a_gpt2_bpe(files, tmp_path):
    d, bpe = files
    prefix = str(tmp_path / "gpt2")
    flags = ["--tokenizer-type", "GPT2BPETokenizer", "--vocab-file", str(d / "vocab.json"),
             "--merge-file", str(d / "merges.txt")]
    out = _preprocess("--input", str(d / "docs.jsonl"), "--output-prefix", prefix, *flags)
    assert out.returncode == 0, out.stderr
    with open(prefix + ".meta.json") as f:
        meta = json.load(f)
    assert (meta["tokenizer"], meta["vocab_size"]) == ("GPT2BPETokenizer", bpe.get_vocab_size())
    from wlb.megatron.indexed import IndexedDocuments

    docs = IndexedDocuments(prefix)
    first = docs.tokens(0, 0, int(docs.lengths[0]))
    assert first[:-1].tolist() == bpe.encode(TEXTS[0]).ids and first[-1] == meta["eod"]
    # a run refuses another tokenizer's data before any work (megatron-core 0.19 builds its
    # GPT2BPETokenizer through HuggingFace transformers, which a CPU install here lacks: the
    # refusal is checked with its NullTokenizer)
    from tests.helpers.lm_runs import run_config
    from wlb.megatron.arguments import ArgumentError

    with pytest.raises(ArgumentError, match="vocab_size=300, eod=0 .* flags give "
                                            "vocab_size=1000, eod=999"):
        run_config(["--data-path", prefix, "--seq-length", "16", "--num-layers", "1",
                    "--tokenizer-type", "NullTokenizer", "--vocab-size", "1000"])


def test_preprocess_null_tokenizer(tmp_path):
    src = tmp_path / "ids.jsonl"
    src.write_text(json.dumps({"text": "1 2 3"}) + "\n" + json.dumps({"text": "4 5"}) + "\n")
    prefix = str(tmp_path / "null")
    out = _preprocess("--input", str(src), "--output-prefix", prefix, "--tokenizer-type",
                      "NullTokenizer", "--vocab-size", "10")
    assert out.returncode == 0, out.stderr
    assert os.path.exists(prefix + ".idx")
    from wlb.megatron.indexed import IndexedDocuments

    docs = IndexedDocuments(prefix)
    assert (docs.vocab_size, docs.eod) == (11, 10)
    np.testing.assert_array_equal(docs.tokens(1, 0, 3), [4, 5, 10])
    bad = _preprocess("--input", str(src), "--output-prefix", prefix, "--tokenizer-type",
                      "NullTokenizer")
    assert bad.returncode == 2 and "needs --vocab-size" in bad.stderr
