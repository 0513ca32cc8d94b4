"""Tokenizers for tools/preprocess_data.py: byte-level (no download) or a HF ``tokenizers`` JSON."""

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


class HFTokenizer:
    """A Hugging Face ``tokenizers`` JSON file (needs the optional ``tokenizers`` package).

    EOD is the first of ``<|endoftext|>``, ``</s>``, ``<eos>`` found in the vocabulary, else a new
    id ``vocab_size`` (and the vocabulary grows by one).
    """

    name = "hf"

    def __init__(self, path: str) -> None:
        try:
            from tokenizers import Tokenizer
        except ImportError:
            raise SystemExit(
                f"--tokenizer {path}: the 'tokenizers' package is not installed "
                "(pip install tokenizers), or use --tokenizer byte"
            ) from None
        self.tok = Tokenizer.from_file(path)
        self.path = path
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


def build_tokenizer(spec: str):
    """'byte' or a path to a tokenizers JSON file."""
    return ByteTokenizer() if spec == "byte" else HFTokenizer(spec)
