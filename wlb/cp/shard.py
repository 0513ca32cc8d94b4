"""Context-parallel shard index math: pure functions, ints in, index lists out.

A packed micro-batch of documents with lengths ``doc_lens`` (total T tokens) is split over
``cp_size`` ranks. Three strategies:

* ``per_seq`` (Llama 3 / Megatron): the whole packed sequence is cut into 2·CP chunks of
  ``c = ceil(T / 2CP)`` tokens (the last ones shorter when T is not a multiple: that is the
  padding Megatron would add, reported by :func:`per_seq_padding`); rank r holds chunks r and
  2CP-1-r. Balanced for one causal document, unbalanced for many.
* ``per_doc`` (WLB-LLM §5.1): *every document* is cut into 2·CP chunks and rank r holds chunks
  r and 2CP-1-r of each. A document's ``d mod 2CP`` remainder tokens are dealt one per chunk
  position with a round-robin pointer that persists across documents, so when T is a multiple of
  2·CP every rank holds exactly T/CP tokens with no padding; documents shorter than 2·CP just get
  empty chunks.
* ``mixed`` (ours, beyond the paper): documents of at least 2·CP·MIXED_MIN_CHUNK tokens are
  sharded per document, and every maximal run of shorter documents between them is sharded as
  one per-sequence unit. Long documents stay balanced, and short ones are not cut into shards
  smaller than a kernel tile. Remainders are dealt round-robin, as in per_doc, so there is no
  padding.

Storage order on a rank: all of its "front" chunks (position r) in document order, then all of its
"back" chunks (position 2CP-1-r) -- i.e. two varlen kernel calls, one per half.

Worked example (per_doc, CP=2, doc_lens=[8, 6]): 2CP = 4 chunk positions.
doc 0 (8 tokens): c=2, no remainder -> chunks [0,2) [2,4) [4,6) [6,8).
doc 1 (6 tokens): c=1, remainder 2 -> positions 0,1 get +1 -> sizes 2,2,1,1 -> [8,10) [10,12)
[12,13) [13,14).
rank 0 holds positions 0 and 3: [0,1, 8,9] + [6,7, 13];
rank 1 holds positions 1 and 2: [2,3, 10,11] + [4,5, 12].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from wlb.cp.strategy import ALL_STRATEGIES, Strategy

#: "mixed": a document whose per-doc chunks would hold at least this many tokens (one
#: FlashAttention query tile) is sharded per document; every maximal run of shorter documents
#: between them is sharded as one per-sequence unit.
MIXED_MIN_CHUNK = 128


def causal_pairs(q: int, kv: int) -> int:
    """Query-key pairs of a bottom-right-aligned causal block: ``q`` queries, the last of which
    sees ``kv`` keys (so the first sees ``kv - q + 1``): ``q * (kv - q) + q * (q + 1) / 2``.

    Example: ``causal_pairs(3, 7) == 3 * 4 + 6 == 18``; a whole causal document of d tokens is
    ``causal_pairs(d, d) == d * (d + 1) / 2``.
    """
    return q * (kv - q) + q * (q + 1) // 2


def pad_to_tile(q: int, kv: int, tile_q: int) -> tuple[int, int]:
    """A segment's (queries, keys) as a kernel with ``tile_q``-row query tiles computes it: the
    queries padded up to a multiple of the tile, the keys by as many (the padding rows sit in
    front, so the last query still sees ``kv`` keys of its own).

    Example: ``pad_to_tile(130, 1000, 128) == (256, 1126)``; ``tile_q=1`` pads nothing.
    """
    qp = -(-q // tile_q) * tile_q
    return qp, kv + (qp - q)


@dataclass(frozen=True)
class Segment:
    """A contiguous run of one document's queries held by a rank.

    Attributes:
        doc: document index within the micro-batch.
        doc_start: global position of the document's first token.
        start: first query position *inside the document*.
        length: number of queries. Causal: they attend to doc keys [0, start + length).
    """

    doc: int
    doc_start: int
    start: int
    length: int

    @property
    def pairs(self) -> int:
        """Query-key pairs under the causal document mask: s*p + s(s+1)/2."""
        return causal_pairs(self.length, self.start + self.length)


def _check(doc_lens: Sequence[int], cp_size: int, cp_rank: int, strategy: Strategy) -> None:
    if cp_size < 1:
        raise ValueError(f"cp_size must be >= 1, got {cp_size}")
    if not 0 <= cp_rank < cp_size:
        raise ValueError(f"cp_rank={cp_rank} out of range for cp_size={cp_size}")
    if strategy not in ALL_STRATEGIES:
        raise ValueError(f"strategy={strategy!r}; choose from {ALL_STRATEGIES}")
    if len(doc_lens) == 0:
        raise ValueError("doc_lens is empty: a micro-batch holds at least one document")
    arr = np.asarray(doc_lens)
    if arr.dtype.kind not in "iu" or arr.ndim != 1 or (arr < 1).any():
        i = next(i for i, d in enumerate(doc_lens)
                 if not isinstance(d, (int, np.integer)) or isinstance(d, bool) or d < 1)
        raise ValueError(f"doc_lens[{i}]={doc_lens[i]!r} must be a positive int")


def _chunk_ranges(lens: np.ndarray, cp: int, strategy: Strategy) -> tuple[np.ndarray, ...]:
    """Global token range [lo, hi) of every rank's two chunks of every sharding unit.

    Returns ``lo, hi``, int64 arrays of shape [cp, 2, U]: axis 1 is (front = position r, back =
    position 2CP-1-r), axis 2 the units in token order (per_seq: the one whole sequence; per_doc:
    each document; mixed: each long document and each run of short ones).

    Inside a unit of d tokens, chunk position k holds ``d // 2CP`` tokens plus one of the
    ``rem = d mod 2CP`` remainder tokens if ``(k - ptr) mod 2CP < rem``, where the round-robin
    pointer ``ptr`` is the sum of the earlier units' remainders mod 2CP; it starts at
    ``lo + k * (d // 2CP) + (remainder tokens dealt to positions < k)``.
    Worked example (CP=2, unit [8, 14), ptr=0): d=6, base 1, rem 2 -> sizes 2,2,1,1, so position
    0 is [8, 10), 1 is [10, 12), 2 is [12, 13), 3 is [13, 14).
    """
    n = 2 * cp
    pos = np.stack([np.arange(cp), n - 1 - np.arange(cp)], axis=1)[..., None]  # [cp, 2, 1]
    total = int(lens.sum())
    if strategy == "per_seq":  # chunks of ceil(T / 2CP) tokens, the last ones shorter
        c = -(-total // n)
        return np.minimum(pos * c, total), np.minimum((pos + 1) * c, total)
    starts = np.cumsum(lens) - lens
    if strategy == "per_doc":
        first = np.arange(len(lens))
    else:  # mixed: a unit starts at every long document and at every short one after a long one
        short = lens < 2 * cp * MIXED_MIN_CHUNK
        first = np.flatnonzero(~(short & np.concatenate([[False], short[:-1]])))
    lo = starts[first]
    d = np.append(lo[1:], total) - lo  # [U]
    base, rem = np.divmod(d, n)
    ptr = (np.cumsum(rem) - rem) % n
    dealt = (np.clip(np.minimum(pos, ptr + rem) - ptr, 0, None)  # remainders at [ptr, pos)
             + np.clip(np.minimum(pos, ptr + rem - n), 0, None))  # ... and wrapped past 2CP
    a = lo + pos * base + dealt
    return a, a + base + ((pos - ptr) % n < rem)


@dataclass(frozen=True)
class SegmentArrays:
    """Query segments of several CP ranks as parallel int64 arrays (the fields of
    :class:`Segment`, plus ``rank`` and ``half``: 0 front, 1 back), in storage order: the first
    rank's front segments, its back segments, then the next rank's."""

    rank: np.ndarray
    half: np.ndarray
    doc: np.ndarray
    doc_start: np.ndarray
    start: np.ndarray
    length: np.ndarray

    @property
    def pairs(self) -> np.ndarray:
        """Causal query-key pairs of every segment (see :func:`causal_pairs`)."""
        kv = self.start + self.length
        return self.length * (kv - self.length) + self.length * (self.length + 1) // 2

    def positions(self) -> np.ndarray:
        """Global token positions of all segments, in order (a rank's shard for one rank)."""
        first = self.doc_start + self.start
        offsets = np.cumsum(self.length) - self.length
        return np.repeat(first - offsets, self.length) + np.arange(int(self.length.sum()))


def segment_arrays(doc_lens: Sequence[int], cp_size: int, strategy: Strategy,
                   ranks: Sequence[int] | None = None) -> SegmentArrays:
    """The query segments of ``ranks`` (default: every rank) under ``strategy``, as arrays.

    Each rank's chunk ranges (:func:`_chunk_ranges`) are cut at document boundaries: a range
    [a, b) covers documents ``first..last`` (found by binary search in the document starts) and
    yields one segment per document, ``[max(a, doc start), min(b, doc end))``.
    """
    _check(doc_lens, cp_size, 0, strategy)
    lens = np.asarray(doc_lens, dtype=np.int64)
    lo, hi = _chunk_ranges(lens, cp_size, strategy)
    if ranks is not None:
        lo, hi = lo[list(ranks)], hi[list(ranks)]
    rank_ids = np.arange(cp_size) if ranks is None else np.asarray(ranks, dtype=np.int64)
    shape = lo.shape  # [R, 2, U]
    lo, hi = lo.reshape(-1), hi.reshape(-1)  # storage order: (rank, half, unit)
    starts = np.cumsum(lens) - lens
    first = np.searchsorted(starts, lo, side="right") - 1
    last = np.searchsorted(starts, hi - 1, side="right") - 1
    count = np.where(hi > lo, last - first + 1, 0)
    k = np.repeat(np.arange(lo.size), count)  # the chunk each segment comes from
    doc = first[k] + np.arange(k.size) - np.repeat(np.cumsum(count) - count, count)
    a = np.maximum(lo[k], starts[doc])
    b = np.minimum(hi[k], starts[doc] + lens[doc])
    per_rank = shape[1] * shape[2]
    return SegmentArrays(rank=rank_ids[k // per_rank], half=(k // shape[2]) % 2, doc=doc,
                         doc_start=starts[doc], start=a - starts[doc], length=b - a)


@lru_cache(maxsize=256)
def _segments_cached(doc_lens: tuple[int, ...], cp: int, r: int, strategy: Strategy):
    seg = segment_arrays(doc_lens, cp, strategy, ranks=[r])
    rows = [Segment(*x) for x in zip(seg.doc.tolist(), seg.doc_start.tolist(),
                                     seg.start.tolist(), seg.length.tolist())]
    n_front = int((seg.half == 0).sum())
    return tuple(rows[:n_front]), tuple(rows[n_front:])


def rank_segments(
    doc_lens: Sequence[int], cp_size: int, cp_rank: int, strategy: Strategy
) -> tuple[tuple[Segment, ...], tuple[Segment, ...]]:
    """The (front, back) query segments a rank holds, in storage order.

    Args:
        doc_lens: document lengths of the packed micro-batch.
        cp_size, cp_rank: the CP group size and this rank.
        strategy: "per_seq", "per_doc" or "mixed".

    Returns:
        Two tuples of :class:`Segment`: the front-chunk segments then the back-chunk segments.
    """
    doc_lens = tuple(int(d) for d in doc_lens)
    _check(doc_lens, cp_size, cp_rank, strategy)
    return _segments_cached(doc_lens, cp_size, cp_rank, strategy)


def shard_position_array(
    doc_lens: Sequence[int], cp_size: int, cp_rank: int, strategy: Strategy
) -> np.ndarray:
    """Global token positions held by a rank, in the order the rank stores them (int64)."""
    _check(doc_lens, cp_size, cp_rank, strategy)
    return segment_arrays(doc_lens, cp_size, strategy, ranks=[cp_rank]).positions()


def shard_positions(
    doc_lens: Sequence[int], cp_size: int, cp_rank: int, strategy: Strategy
) -> list[int]:
    """Global token positions held by a rank, in the order the rank stores them."""
    return shard_position_array(doc_lens, cp_size, cp_rank, strategy).tolist()


def rank_token_counts(doc_lens: Sequence[int], cp_size: int, strategy: Strategy) -> list[int]:
    """Tokens held by each rank."""
    seg = segment_arrays(doc_lens, cp_size, strategy)
    return np.bincount(seg.rank, weights=seg.length, minlength=cp_size).astype(int).tolist()


def rank_attention_pairs(doc_lens: Sequence[int], cp_size: int, strategy: Strategy) -> list[int]:
    """Causal document-masked query-key pairs computed by each rank (its attention work)."""
    seg = segment_arrays(doc_lens, cp_size, strategy)
    out = np.zeros(cp_size, dtype=np.int64)
    np.add.at(out, seg.rank, seg.pairs)
    return out.tolist()


def per_seq_padding(doc_lens: Sequence[int], cp_size: int) -> int:
    """Tokens stock Megatron would pad to make the sequence a multiple of 2·CP."""
    return -sum(doc_lens) % (2 * cp_size)


def inverse_permutation(doc_lens: Sequence[int], cp_size: int, strategy: Strategy) -> list[int]:
    """``inv`` such that ``concat(rank 0 tokens, rank 1 tokens, ...)[inv]`` is global order."""
    order = segment_arrays(doc_lens, cp_size, strategy).positions()
    inv = np.empty_like(order)
    inv[order] = np.arange(order.size)
    return inv.tolist()
