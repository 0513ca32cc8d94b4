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
    for i, d in enumerate(doc_lens):
        if not isinstance(d, int) or d < 1:
            raise ValueError(f"doc_lens[{i}]={d!r} must be a positive int")


def _split_runs(doc_lens: Sequence[int], lo: int, hi: int) -> list[Segment]:
    """Segments of global token range [lo, hi) cut at document boundaries."""
    out, start = [], 0
    for i, d in enumerate(doc_lens):
        end = start + d
        a, b = max(lo, start), min(hi, end)
        if a < b:
            out.append(Segment(i, start, a - start, b - a))
        start = end
        if start >= hi:
            break
    return out


def _per_seq(doc_lens: tuple[int, ...], cp: int, r: int) -> tuple[list[Segment], list[Segment]]:
    total = sum(doc_lens)
    c = -(-total // (2 * cp))  # chunk size, ceil

    def chunk(i):
        return _split_runs(doc_lens, min(i * c, total), min((i + 1) * c, total))

    return chunk(r), chunk(2 * cp - 1 - r)


def _chunk_sizes(d: int, n_pos: int, ptr: int) -> tuple[list[int], int]:
    """Sizes of a unit's 2CP chunks: ``d // 2CP`` each, the ``d mod 2CP`` remainder tokens one
    per position starting at the round-robin pointer ``ptr``; returns (sizes, next pointer)."""
    base, rem = divmod(d, n_pos)
    return [base + ((k - ptr) % n_pos < rem) for k in range(n_pos)], (ptr + rem) % n_pos


def _per_units(doc_lens: tuple[int, ...], units, cp: int, r: int):
    """Head/tail chunks r and 2CP-1-r of every unit (a [start, end) token range), cut at document
    boundaries; remainders dealt round-robin across units as in per_doc."""
    n_pos = 2 * cp
    front: list[Segment] = []
    back: list[Segment] = []
    ptr = 0
    for lo, hi in units:
        sizes, ptr = _chunk_sizes(hi - lo, n_pos, ptr)
        offs = [lo]
        for k in range(n_pos - 1):
            offs.append(offs[-1] + sizes[k])
        for pos, dest in ((r, front), (n_pos - 1 - r, back)):
            if sizes[pos]:
                dest.extend(_split_runs(doc_lens, offs[pos], offs[pos] + sizes[pos]))
    return front, back


def _per_doc(doc_lens: tuple[int, ...], cp: int, r: int) -> tuple[list[Segment], list[Segment]]:
    starts = [0]
    for d in doc_lens[:-1]:
        starts.append(starts[-1] + d)
    return _per_units(doc_lens, [(a, a + d) for a, d in zip(starts, doc_lens)], cp, r)


def _mixed(doc_lens: tuple[int, ...], cp: int, r: int) -> tuple[list[Segment], list[Segment]]:
    """Long documents (>= 2CP x MIXED_MIN_CHUNK tokens) per document, each run of short ones
    per sequence.

    Worked example (CP=2, so long means >= 512 tokens; doc_lens=[100, 600, 20, 30]): units are
    [0,100) (short run), [100,700) (long), [700,750) (short run). Unit [100,700) is cut into
    4 x 150 tokens; [0,100) into 4 x 25; [700,750) into 13,13,12,12 (the remainder pointer starts
    at 0 there because 100 and 600 divide by 4). Rank 0 holds positions 0 and 3 of each unit.
    """
    long_len = 2 * cp * MIXED_MIN_CHUNK
    units: list[list[int]] = []  # [start, end) token ranges
    start, prev_short = 0, False
    for d in doc_lens:
        short = d < long_len
        if short and prev_short:
            units[-1][1] += d  # extend the run of short documents
        else:
            units.append([start, start + d])
        start, prev_short = start + d, short
    return _per_units(doc_lens, units, cp, r)


_BUILDERS = {"per_seq": _per_seq, "per_doc": _per_doc, "mixed": _mixed}


@lru_cache(maxsize=256)
def _segments_cached(doc_lens: tuple[int, ...], cp: int, r: int, strategy: Strategy):
    front, back = _BUILDERS[strategy](doc_lens, cp, r)
    return tuple(front), tuple(back)


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


def shard_positions(
    doc_lens: Sequence[int], cp_size: int, cp_rank: int, strategy: Strategy
) -> list[int]:
    """Global token positions held by a rank, in the order the rank stores them."""
    front, back = rank_segments(doc_lens, cp_size, cp_rank, strategy)
    out: list[int] = []
    for s in front + back:
        a = s.doc_start + s.start
        out.extend(range(a, a + s.length))
    return out


def rank_token_counts(doc_lens: Sequence[int], cp_size: int, strategy: Strategy) -> list[int]:
    """Tokens held by each rank."""
    return [
        sum(s.length for half in rank_segments(doc_lens, cp_size, r, strategy) for s in half)
        for r in range(cp_size)
    ]


def rank_attention_pairs(doc_lens: Sequence[int], cp_size: int, strategy: Strategy) -> list[int]:
    """Causal document-masked query-key pairs computed by each rank (its attention work)."""
    return [
        sum(s.pairs for half in rank_segments(doc_lens, cp_size, r, strategy) for s in half)
        for r in range(cp_size)
    ]


def per_seq_padding(doc_lens: Sequence[int], cp_size: int) -> int:
    """Tokens stock Megatron would pad to make the sequence a multiple of 2·CP."""
    return -sum(doc_lens) % (2 * cp_size)


def inverse_permutation(doc_lens: Sequence[int], cp_size: int, strategy: Strategy) -> list[int]:
    """``inv`` such that ``concat(rank 0 tokens, rank 1 tokens, ...)[inv]`` is global order."""
    order = [p for r in range(cp_size) for p in shard_positions(doc_lens, cp_size, r, strategy)]
    inv = [0] * len(order)
    for i, p in enumerate(order):
        inv[p] = i
    return inv
