"""Placing pieces into N capped micro-batches: the paper's greedy and a swap-refinement pass.

Pure functions over lengths and workloads; the packers call them once per global batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from wlb.cost_model import CostModel
from wlb.packing.types import Piece


class Bins:
    """N micro-batches under construction: pieces, workloads and token counts."""

    def __init__(self, n: int, cap: int) -> None:
        self.cap = cap
        self.pieces: list[list[Piece]] = [[] for _ in range(n)]
        self.weights: list[list[float]] = [[] for _ in range(n)]
        self.load = [0.0] * n
        self.tokens = [0] * n

    def add(self, j: int, piece: Piece, w: float) -> None:
        self.pieces[j].append(piece)
        self.weights[j].append(w)
        self.load[j] += w
        self.tokens[j] += piece.length

    def remove(self, j: int, i: int) -> tuple[Piece, float]:
        piece, w = self.pieces[j].pop(i), self.weights[j].pop(i)
        self.load[j] -= w
        self.tokens[j] -= piece.length
        return piece, w


def greedy_place(
    pieces: Sequence[Piece], weights: Sequence[float], bins: Bins, *, strict: bool = False
) -> list[Piece]:
    """Algorithm 1 step (e): each piece goes to the min-workload bin if it fits, else to the
    min-token bin if it fits, else it is carried over. Returns the carried-over pieces.

    Args:
        pieces, weights: pieces in placement order and their workloads.
        bins: the micro-batches, filled in place.
        strict: the paper's ``len + d < S_max``; default ``<=`` (a micro-batch may hold exactly
            ``cap`` tokens).
    """
    load, tokens, cap = bins.load, bins.tokens, bins.cap
    n = len(load)
    rng = range(n)
    left: list[Piece] = []
    for p, w in zip(pieces, weights):
        d = p.length
        wj = min(rng, key=load.__getitem__)
        if tokens[wj] + d < cap or (not strict and tokens[wj] + d == cap):
            bins.add(wj, p, w)
            continue
        lj = min(rng, key=tokens.__getitem__)
        if tokens[lj] + d < cap or (not strict and tokens[lj] + d == cap):
            bins.add(lj, p, w)
        else:
            left.append(p)
    return left


def _best_move(bins: Bins, a: int, b: int) -> tuple[int, int] | None:
    """Best single move (i from a to b, j=-1) or swap (i in a with j in b) that lowers
    max(load[a], load[b]); None when nothing helps. Vectorised over the two bins' pieces."""
    gap = bins.load[a] - bins.load[b]
    if gap <= 0:
        return None
    wa = np.asarray(bins.weights[a])
    la = np.fromiter((p.length for p in bins.pieces[a]), np.int64, len(wa))
    room_b = bins.cap - bins.tokens[b]
    room_a = bins.cap - bins.tokens[a]
    # move i: new max = max(load_a - w, load_b + w); improves iff 0 < w < gap.
    best, best_score = None, gap  # score = resulting |load_a - load_b|
    ok = (wa < gap) & (la <= room_b)
    if ok.any():
        scores = np.where(ok, np.abs(gap - 2 * wa), np.inf)
        i = int(scores.argmin())
        if scores[i] < best_score:
            best, best_score = (i, -1), float(scores[i])
    if bins.weights[b]:
        wb = np.asarray(bins.weights[b])
        lb = np.fromiter((p.length for p in bins.pieces[b]), np.int64, len(wb))
        delta = wa[:, None] - wb[None, :]  # [|a|, |b|] workload moved from a to b
        dlen = la[:, None] - lb[None, :]  # tokens moved from a to b
        ok = (delta > 0) & (delta < gap) & (dlen <= room_b) & (-dlen <= room_a)
        if ok.any():
            scores = np.where(ok, np.abs(gap - 2 * delta), np.inf)
            flat = int(scores.argmin())
            if scores.flat[flat] < best_score - 1e-12:
                best = divmod(flat, len(wb))
    return best


def refine(bins: Bins, *, max_rounds: int = 64, tol: float = 1e-4) -> int:
    """Local search: repeatedly move or swap one piece between the heaviest micro-batch and the
    lightest one that admits an improving change. Stops when the heaviest cannot improve, after
    ``max_rounds`` changes, or when max/mean <= 1 + tol. Returns the number of changes."""
    n = len(bins.load)
    changes = 0
    total = sum(bins.load)
    if n < 2 or total <= 0:
        return 0
    target = total / n * (1 + tol)
    while changes < max_rounds:
        a = max(range(n), key=bins.load.__getitem__)
        if bins.load[a] <= target:
            break
        for b in sorted(range(n), key=bins.load.__getitem__):
            if b == a:
                continue
            mv = _best_move(bins, a, b)
            if mv is None:
                continue
            i, j = mv
            p, w = bins.remove(a, i)
            if j >= 0:
                q, wq = bins.remove(b, j)
                bins.add(a, q, wq)
            bins.add(b, p, w)
            changes += 1
            break
        else:
            break
    return changes


def fill_leftovers(bins: Bins, left: list[Piece], cost: CostModel) -> list[Piece]:
    """Place carried-over pieces where they fit without raising the heaviest micro-batch.

    Cuts delay for free: a piece is carried only if every micro-batch with room would become the
    new maximum. Returns the pieces still carried over (input order kept).
    """
    still: list[Piece] = []
    n = len(bins.load)
    for p in left:
        w = cost.doc_workload(p.length)
        top = max(bins.load)
        fits = [j for j in range(n) if bins.tokens[j] + p.length <= bins.cap]
        j = min(fits, key=bins.load.__getitem__, default=None)
        if j is not None and bins.load[j] + w <= top:
            bins.add(j, p, w)
        else:
            still.append(p)
    return still
