"""The CP index math as it was first written: one Python loop per document and chunk.

An independent reference for :mod:`wlb.cp.shard`, whose array version must give exactly the same
segments (``tests/cp/test_shard_arrays.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

from wlb.cp.shard import MIXED_MIN_CHUNK, Segment


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


BUILDERS = {"per_seq": _per_seq, "per_doc": _per_doc, "mixed": _mixed}


def reference_segments(doc_lens: Sequence[int], cp: int, r: int, strategy: str):
    """(front, back) segment lists of rank ``r``, by the loops above."""
    return BUILDERS[strategy](tuple(doc_lens), cp, r)


def reference_tput(table, q: float, kv: float) -> float:
    """``KernelTable`` throughput by scalar loops (bilinear in log2 space, NaN cells skipped)."""
    import bisect
    import math

    def bracket(xs, x):
        x = min(max(x, xs[0]), xs[-1])
        if len(xs) == 1:
            return 0, 0, 0.0
        i = min(max(bisect.bisect_right(xs, x) - 1, 0), len(xs) - 2)
        lo, hi = math.log2(xs[i]), math.log2(xs[i + 1])
        return i, i + 1, 0.0 if hi == lo else (math.log2(x) - lo) / (hi - lo)

    i0, i1, fq = bracket(table.q_lens, q)
    j0, j1, fk = bracket(table.kv_lens, kv)
    acc = wsum = 0.0
    for i, wi in ((i0, 1 - fq), (i1, fq)):
        for j, wj in ((j0, 1 - fk), (j1, fk)):
            v = table.pairs_per_us[i][j]
            if wi * wj > 0 and v == v and v > 0:
                acc += wi * wj * math.log2(v)
                wsum += wi * wj
    if wsum == 0:
        row = [v for v in table.pairs_per_us[i0] if v == v and v > 0]
        return max(row) if row else 1.0
    return 2 ** (acc / wsum)


def reference_predict(doc_lens: Sequence[int], cp: int, strategy: str, table) -> list[float]:
    """Every rank's predicted attention microseconds, one segment at a time."""
    out = []
    for r in range(cp):
        front, back = reference_segments(doc_lens, cp, r, strategy)
        total = 0.0
        for s in front + back:
            q, kv = s.length, s.start + s.length
            qp = -(-q // table.tile_q) * table.tile_q
            kvp = kv + qp - q
            total += (qp * (kvp - qp) + qp * (qp + 1) // 2) / reference_tput(table, qp, kvp)
        out.append(total)
    return out
