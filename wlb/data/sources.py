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


class ConcatDocuments:
    """Several sources as one: document ids run through them in order (``--data-path A B``).

    All must share ``vocab_size`` and ``eod`` (ValueError naming the first that does not).
    """

    def __init__(self, sources: list[DocumentSource], names: list[str] | None = None) -> None:
        names = names or [f"dataset {k + 1}" for k in range(len(sources))]
        first = sources[0]
        for s, name in zip(sources[1:], names[1:]):
            if (s.vocab_size, s.eod) != (first.vocab_size, first.eod):
                raise ValueError(
                    f"{name} has vocab_size={s.vocab_size}, eod={s.eod} but {names[0]} has "
                    f"vocab_size={first.vocab_size}, eod={first.eod}: blend datasets built "
                    "with one tokenizer")
        self.sources = sources
        self.lengths = np.concatenate([s.lengths for s in sources]).astype(np.int64)
        self.starts = np.concatenate([[0], np.cumsum([len(s.lengths) for s in sources])])
        self.vocab_size, self.eod = first.vocab_size, first.eod

    def tokens(self, doc_id: int, start: int, stop: int) -> np.ndarray:
        k = int(np.searchsorted(self.starts, doc_id, side="right")) - 1
        return self.sources[k].tokens(int(doc_id - self.starts[k]), start, stop)


class DocumentView:
    """The documents ``doc_ids`` of ``base`` (a split, or a blend with repeats), renumbered
    0..len-1: a packer's ``doc_id`` indexes the view."""

    def __init__(self, base: DocumentSource, doc_ids: np.ndarray) -> None:
        self.base = base
        self.doc_ids = np.asarray(doc_ids, dtype=np.int64)
        self.lengths = base.lengths[self.doc_ids]
        self.vocab_size, self.eod = base.vocab_size, base.eod

    def tokens(self, doc_id: int, start: int, stop: int) -> np.ndarray:
        return self.base.tokens(int(self.doc_ids[doc_id]), start, stop)
