"""Workload-matched outlier release (beyond the paper's "N in one level" rule).

The paper releases N outliers when one length level holds N. Fixed levels are coarse: a level
[64K, 128K) releases a 70K and a 124K document together, and under a token cap S_max no filler can
raise the 70K micro-batch to the 124K one's workload. Finer levels fix balance but wait longer.

Here a heavy document h is released together with N-1 companion *slots* that can each reach h's
workload T = W(h) within the cap: a slot is one document, or a pair of documents sharing a
micro-batch, whose workload plus the most filler that fits (``(S_max - tokens) * rho``, rho = the
batch's workload per filler token) lands in [T/(1+tol), T*(1+tol)]. Each group member then seeds
its own micro-batch and the batch's ordinary documents fill around them.
"""

from __future__ import annotations

from collections.abc import Sequence


def match_release(
    weights: Sequence[float],
    lengths: Sequence[int],
    ages: Sequence[int],
    *,
    n: int,
    cap: int,
    rho: float,
    tol: float,
    max_wait: int,
) -> list[list[int]]:
    """Choose pool documents to release as N micro-batch seeds.

    Args:
        weights, lengths, ages: workload, tokens and iterations waited of each pooled document.
        n: micro-batches per batch (N).
        cap: S_max, tokens per micro-batch.
        rho: workload per token of the filler documents (>= the linear coefficient).
        tol: relative balance tolerance of a slot.
        max_wait: a document that has waited this long is released with the best group that can
            be formed around it, balanced or not (bounds the delay).

    Returns:
        Up to N groups of pool indices (each group seeds one micro-batch); [] to release nothing.

    Example:
        W(d) = d^2/100 + d, cap 200, rho 1, tol 0.01, N = 2. Head: a 128-token doc,
        T = 291.84. A lone 90-token doc (W 171) reaches only 171 + 110 = 281 < T/1.01, and two
        90s (W 342) overshoot T*1.01, but a 90 with a 70 (W 171 + 119 = 290, 160 tokens, room
        for 40 more) fits in [T/1.01, T*1.01]: groups [[head], [the 90, the 70]].
    """
    m = len(weights)
    if m == 0:
        return []
    order = sorted(range(m), key=lambda i: (-weights[i], i))
    oldest = max(range(m), key=lambda i: (ages[i], -i))
    forced = ages[oldest] >= max_wait
    heads = [oldest] if forced else order
    for h in heads:
        t = weights[h]
        lo, hi = t / (1 + tol), t * (1 + tol)
        groups = [[h]]
        free = [j for j in order if j != h and weights[j] <= hi]
        # single-document slots first (heaviest first), then pairs.
        rest = []
        for j in free:
            if len(groups) == n:
                break
            if weights[j] + (cap - lengths[j]) * rho >= lo:
                groups.append([j])
            else:
                rest.append(j)
        used = set()
        for a_pos, a in enumerate(rest):
            if len(groups) == n:
                break
            if a in used:
                continue
            for b in rest[a_pos + 1 :]:
                if b in used or lengths[a] + lengths[b] > cap:
                    continue
                w2 = weights[a] + weights[b]
                if w2 <= hi and w2 + (cap - lengths[a] - lengths[b]) * rho >= lo:
                    groups.append([a, b])
                    used.update((a, b))
                    break
        if len(groups) == n or forced:
            return groups
    return []
