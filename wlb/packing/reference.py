"""Exact reference for small packing instances: a MILP solved with HiGHS (``highspy``).

Benchmarks and tests only (never the training path): it measures the optimality gap of the
heuristic placements on instances small enough to solve exactly.

    minimise z  s.t.  sum_j x_ij = 1            (every document placed once)
                      sum_i d_i x_ij <= cap     (token cap of micro-batch j)
                      sum_i W_i x_ij <= z       (z bounds every micro-batch's workload)
                      x_ij in {0, 1}
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import numpy as np


def _new_highs():
    """A Highs instance, with its C-level start-up banner kept off stdout (--json output)."""
    import highspy  # lazy: optional benchmark dependency

    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            h = highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    h.setOptionValue("output_flag", False)
    return h


def solve_min_max(
    lengths: Sequence[int],
    weights: Sequence[float],
    n: int,
    cap: int,
    time_limit: float = 10.0,
) -> tuple[float, list[int]] | None:
    """Optimal min-max workload assignment of documents to ``n`` capped micro-batches.

    Args:
        lengths: tokens per document.
        weights: workload per document.
        n: number of micro-batches.
        cap: token cap per micro-batch.
        time_limit: HiGHS time limit in seconds.

    Returns:
        (optimal max workload, bin index per document), or None if infeasible or not solved
        to optimality within the limit.
    """
    import highspy  # lazy: optional benchmark dependency

    m = len(lengths)
    d = np.asarray(lengths, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    h = _new_highs()
    h.setOptionValue("time_limit", float(time_limit))
    h.setOptionValue("mip_rel_gap", 1e-9)
    inf = highspy.kHighsInf
    # columns: x_{i,j} at i*n + j, then z.
    nx = m * n
    h.addVars(nx + 1, np.zeros(nx + 1), np.r_[np.ones(nx), inf])
    h.changeColsIntegrality(
        nx, np.arange(nx, dtype=np.int32), np.full(nx, highspy.HighsVarType.kInteger)
    )
    h.changeColCost(nx, 1.0)
    for i in range(m):
        idx = np.arange(i * n, i * n + n, dtype=np.int32)
        h.addRow(1.0, 1.0, n, idx, np.ones(n))
    for j in range(n):
        idx = np.arange(j, nx, n, dtype=np.int32)
        h.addRow(-inf, float(cap), m, idx, d)
        h.addRow(-inf, 0.0, m + 1, np.r_[idx, nx].astype(np.int32), np.r_[w, -1.0])
    h.run()
    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        return None
    x = np.asarray(h.getSolution().col_value[:nx]).reshape(m, n)
    return float(h.getInfo().objective_function_value), [int(r) for r in x.argmax(axis=1)]


def optimality_gaps(
    pool: Sequence[int],
    cost,
    *,
    n: int = 4,
    docs: int = 12,
    instances: int = 20,
    seed: int = 0,
) -> dict:
    """Gap of the greedy (paper) and greedy+refine placements to the MILP optimum.

    Each instance draws ``docs`` lengths from ``pool``, sets seq_length = ceil(sum / n) and the cap
    to that seq_length's default S_max (at least the longest document), and places every
    document. Instances where a heuristic cannot place every document, or HiGHS does not prove
    optimality, are counted but not averaged.

    Returns:
        ``{"instances", "solved", "greedy_gap_mean", "greedy_gap_max", "refine_gap_mean",
        "refine_gap_max", "greedy_unplaced", "refine_unplaced"}`` with gaps as max/opt - 1.
    """
    from wlb.packing.base import default_max_tokens
    from wlb.packing.placement import Bins, greedy_place, refine
    from wlb.packing.types import Piece

    rng = np.random.default_rng(seed)
    pool = np.asarray(pool)
    gaps: dict[str, list[float]] = {"greedy": [], "refine": []}
    unplaced = {"greedy": 0, "refine": 0}
    solved = 0
    for _ in range(instances):
        lens = sorted((int(x) for x in rng.choice(pool, docs)), reverse=True)
        seq = -(-sum(lens) // n)
        cap = max(default_max_tokens(seq), lens[0])
        ws = [cost.doc_workload(x) for x in lens]
        opt = solve_min_max(lens, ws, n, cap)
        if opt is None:
            continue
        solved += 1
        pieces = [Piece(i, 0, x, 0) for i, x in enumerate(lens)]
        for mode in ("greedy", "refine"):
            bins = Bins(n, cap)
            left = greedy_place(pieces, ws, bins)
            if mode == "refine":
                refine(bins, max_rounds=4 * n)
            if left:
                unplaced[mode] += 1
                continue
            gaps[mode].append(max(bins.load) / opt[0] - 1.0)
    out = {"instances": instances, "solved": solved}
    for mode, g in gaps.items():
        out[f"{mode}_gap_mean"] = float(np.mean(g)) if g else None
        out[f"{mode}_gap_max"] = float(np.max(g)) if g else None
        out[f"{mode}_unplaced"] = unplaced[mode]
    return out
