"""Where documents come from: the indexed dataset (wlb.megatron.indexed) or mock documents."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class DocumentSource(Protocol):
    """Token documents addressed by index.

    Attributes:
        lengths: int64 [num_docs], tokens per document (the EOD token included if any).
        vocab_size: tokens are in [0, vocab_size).
        eod: end-of-document token id (also used to fill padding).
    """

    lengths: np.ndarray
    vocab_size: int
    eod: int

    def tokens(self, doc_id: int, start: int, stop: int) -> np.ndarray:
        """Tokens [start, stop) of document ``doc_id`` (int64)."""


class MockDocuments:
    """Synthetic documents (``--mock-data``) with lengths drawn from a real sample.

    Lengths are sampled with replacement from ``length_sample`` (scaled by ``scale``, at least 2
    tokens). Token ids are a seeded function of (seed, doc_id): a cheap order-2 pattern plus noise,
    so the loss has something to learn and every rank sees identical documents.

    Args:
        length_sample: observed document lengths (e.g. data/doc_lengths/*.json).
        num_docs: documents to generate.
        vocab_size: token ids are in [0, vocab_size); vocab_size - 1 is EOD.
        seed: generator seed.
        scale: multiply sampled lengths by this (e.g. 1/16 to fit a CPU context).
    """

    def __init__(self, length_sample, num_docs: int, vocab_size: int = 256, seed: int = 0,
                 scale: float = 1.0) -> None:
        if num_docs <= 0:
            raise ValueError(f"num_docs={num_docs} must be > 0")
        if vocab_size < 4:
            raise ValueError(f"vocab_size={vocab_size} must be >= 4")
        sample = np.asarray(length_sample, dtype=np.float64)
        if sample.size == 0 or (sample <= 0).any():
            raise ValueError("length_sample must be non-empty and positive")
        rng = np.random.default_rng(seed)
        drawn = rng.choice(sample, size=num_docs, replace=True) * scale
        self.lengths = np.maximum(np.round(drawn), 2).astype(np.int64)
        self.vocab_size = int(vocab_size)
        self.eod = self.vocab_size - 1
        self.seed = seed

    def tokens(self, doc_id: int, start: int, stop: int) -> np.ndarray:
        n = int(self.lengths[doc_id])
        rng = np.random.default_rng([self.seed, 7919, doc_id])
        v = self.vocab_size - 1
        a, b = rng.integers(1, v, size=2)
        idx = np.arange(n, dtype=np.int64)
        base = (a * idx + b * (idx // 3)) % v
        noise = rng.integers(0, v, size=n)
        doc = np.where(rng.random(n) < 0.2, noise, base)
        doc[-1] = self.eod
        return doc[start:stop]
