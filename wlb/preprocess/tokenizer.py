"""Tokenizers for tools/preprocess_data.py and the run's vocabulary, offline from local files.

Megatron's ``--tokenizer-type`` names: ``NullTokenizer`` (text is space-separated ids,
``--vocab-size`` of them plus EOD), ``HuggingFaceTokenizer`` (``--tokenizer-model``: a
``tokenizer.json`` or a directory holding one) and ``GPT2BPETokenizer`` (``--vocab-file`` and
``--merge-file``), the last two read with the ``tokenizers`` package; plus ``byte`` (UTF-8
bytes, no files) for the built-in corpus.
"""

from __future__ import annotations

import numpy as np


class ByteTokenizer:
    """UTF-8 bytes as tokens 0..255; 256 is end-of-document. vocab_size = 257."""

    name = "byte"
    vocab_size = 257
    eod = 256

    def encode(self, text: str) -> np.ndarray:
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int64)

    def decode(self, ids) -> str:
        return bytes(int(i) for i in ids if int(i) < 256).decode("utf-8", errors="replace")


#: the --tokenizer-type values this project reads
TOKENIZER_TYPES = ("NullTokenizer", "HuggingFaceTokenizer", "GPT2BPETokenizer")

#: the flags each needs
TOKENIZER_FILES = {"NullTokenizer": ("vocab_size",), "HuggingFaceTokenizer": ("tokenizer_model",),
                   "GPT2BPETokenizer": ("vocab_file", "merge_file")}


class NullTokenizer:
    """Megatron's NullTokenizer: the text is space-separated token ids below ``vocab_size``;
    EOD is ``vocab_size`` and the vocabulary ``vocab_size + 1``."""

    name = "NullTokenizer"

    def __init__(self, vocab_size: int) -> None:
        if vocab_size <= 0:
            raise ValueError(f"NullTokenizer: --vocab-size={vocab_size} must be > 0")
        self.eod = int(vocab_size)
        self.vocab_size = self.eod + 1

    def encode(self, text: str) -> np.ndarray:
        ids = np.asarray([int(x) for x in text.split()], dtype=np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= self.eod):
            raise ValueError(f"NullTokenizer: token id {int(ids.max())} is outside "
                             f"[0, {self.eod})")
        return ids

    def decode(self, ids) -> str:
        return " ".join(str(int(i)) for i in ids if int(i) != self.eod)


def _tokenizers(flag: str, path: str):
    try:
        import tokenizers
    except ImportError:
        raise SystemExit(
            f"{flag} {path}: the 'tokenizers' package is not installed "
            "(pip install tokenizers)"
        ) from None
    return tokenizers


class HFTokenizer:
    """A Hugging Face ``tokenizers`` JSON file (needs the ``tokenizers`` package).

    EOD is the first of ``<|endoftext|>``, ``</s>``, ``<eos>`` found in the vocabulary, else a new
    id ``vocab_size`` (and the vocabulary grows by one).
    """

    name = "hf"

    def __init__(self, path: str, flag: str = "--tokenizer-model") -> None:
        import os

        tokenizers = _tokenizers(flag, path)
        if os.path.isdir(path):
            path = os.path.join(path, "tokenizer.json")
        try:
            self.tok = tokenizers.Tokenizer.from_file(path)
        except Exception as e:  # the package's own error for a missing or foreign file
            raise ValueError(f"{flag} {path}: cannot read a tokenizer.json ({e})") from None
        self.path = path
        self._set_eod()

    def _set_eod(self) -> None:
        vocab = self.tok.get_vocab()
        for cand in ("<|endoftext|>", "</s>", "<eos>"):
            if cand in vocab:
                self.eod = vocab[cand]
                self.vocab_size = self.tok.get_vocab_size()
                break
        else:
            self.eod = self.tok.get_vocab_size()
            self.vocab_size = self.eod + 1

    def encode(self, text: str) -> np.ndarray:
        return np.asarray(self.tok.encode(text).ids, dtype=np.int64)

    def decode(self, ids) -> str:
        return self.tok.decode([int(i) for i in ids if int(i) != self.eod])


class GPT2BPETokenizer(HFTokenizer):
    """GPT-2's byte-level BPE from Megatron's ``--vocab-file`` (vocab.json) and
    ``--merge-file`` (merges.txt); EOD is ``<|endoftext|>``."""

    name = "GPT2BPETokenizer"

    def __init__(self, vocab_file: str, merge_file: str) -> None:
        tokenizers = _tokenizers("--vocab-file", vocab_file)
        try:
            bpe = tokenizers.models.BPE.from_file(vocab_file, merge_file)
        except Exception as e:
            raise ValueError(f"--vocab-file {vocab_file} / --merge-file {merge_file}: cannot "
                             f"read them ({e})") from None
        self.tok = tokenizers.Tokenizer(bpe)
        self.tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
        self.tok.decoder = tokenizers.decoders.ByteLevel()
        self.path = vocab_file
        self._set_eod()


def check_tokenizer_flags(kind: str | None, **given) -> None:
    """The flags ``kind`` needs are given (ValueError naming the first missing one)."""
    if kind is None:
        return
    if kind not in TOKENIZER_TYPES:
        raise ValueError(f"--tokenizer-type {kind} is not supported yet (here: "
                         f"{', '.join(TOKENIZER_TYPES)}; HuggingFaceTokenizer reads a local "
                         "tokenizer.json)")
    for name in TOKENIZER_FILES[kind]:
        if given.get(name) is None:
            raise ValueError(f"--tokenizer-type {kind} needs --{name.replace('_', '-')}")


def tokenizer_from_flags(kind: str, *, vocab_size=None, tokenizer_model=None, vocab_file=None,
                         merge_file=None):
    """The tokenizer Megatron's ``--tokenizer-type`` flags describe."""
    check_tokenizer_flags(kind, vocab_size=vocab_size, tokenizer_model=tokenizer_model,
                          vocab_file=vocab_file, merge_file=merge_file)
    if kind == "NullTokenizer":
        return NullTokenizer(vocab_size)
    if kind == "HuggingFaceTokenizer":
        return HFTokenizer(tokenizer_model)
    return GPT2BPETokenizer(vocab_file, merge_file)


def build_tokenizer(spec: str):
    """'byte' or a path to a tokenizers JSON file (``tools/preprocess_data.py --tokenizer``)."""
    return ByteTokenizer() if spec == "byte" else HFTokenizer(spec, "--tokenizer")
