"""Automatic outlier thresholds: chosen by simulation on a sample of document lengths.

The paper tunes its queue thresholds offline by hand and publishes no values (§4.2). This does the
same search automatically: candidate settings are simulated on a seeded sample of the lengths and
the most balanced one whose mean per-token delay stays within a budget wins.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from wlb.cost_model import CostModel
from wlb.packing.base import default_max_tokens
from wlb.packing.simulate import simulate
from wlb.packing.stream import validate_lengths
from wlb.packing.wlb import WLBPacker


@dataclass(frozen=True)
class TunedOutliers:
    """Result of :func:`auto_tune_outliers`: the chosen settings and their simulated figures."""

    thresholds: list[int]
    balance_tol: float
    max_wait: int
    imbalance_mean: float
    delay_iters_mean: float
    candidates: int


def _threshold_for_ratio(cost: CostModel, target: float) -> int:
    """Smallest integer d with W(d) >= target (W increasing in d)."""
    a, b, c = cost.attn_coef, cost.linear_coef, cost.doc_coef - target
    if c >= 0:  # the per-document constant alone reaches the target (no real root when a > 0)
        return 1
    if a == 0:
        return max(1, int(np.ceil(-c / b)))
    return max(1, int(np.ceil((-b + np.sqrt(b * b - 4 * a * c)) / (2 * a))))


def candidate_settings(
    lengths: np.ndarray, cost: CostModel, n: int, seq_length: int, release: str, max_tokens: int
) -> list[tuple[list[int], float, int]]:
    """(thresholds, tol, max_wait) candidates, scaled to this model and context.

    L_1 is placed where one document's workload is a given fraction of an average micro-batch's
    (tokens per micro-batch x mean workload per token), so the grid follows the cost model rather
    than absolute lengths. Documents longer than S_max count as the S_max-token pieces they are
    packed as. When attention is so expensive that every such L_1 reaches S_max (e.g. a CPU cost
    model with a crossover of ~100 tokens), L_1 falls back to fixed fractions of S_max. For the
    paper's count release, upper levels split [L_1, S_max] geometrically.
    """
    pieces = np.minimum(lengths, max_tokens)
    per_token = float(cost.workloads(pieces).sum() / pieces.sum())
    avg_mb = seq_length * per_token
    l1s = [_threshold_for_ratio(cost, f * avg_mb) for f in (0.3, 0.45, 0.6, 0.8, 1.0)]
    l1s = [x for x in l1s if x < max_tokens] or sorted(
        {max(1, int(f * max_tokens)) for f in (0.25, 0.4, 0.6)})
    out = []
    for l1 in l1s:
        if release == "match":
            for tol in (0.01, 0.02):
                for wait in (8, 16, 32):
                    out.append(([l1], tol, wait))
        else:
            for levels in (1, 2, 3, 4):
                edges = np.geomspace(l1, max_tokens, levels + 1)[:-1]
                ths = sorted({int(e) for e in edges})
                for wait in (8, 32):
                    out.append((ths, 0.01, wait))
    return out


def auto_tune_outliers(
    sample_lengths: Sequence[int],
    *,
    num_microbatches: int,
    seq_length: int,
    cost_model: CostModel,
    max_tokens: int | None = None,
    release: str = "match",
    delay_budget: float = 0.5,
    num_batches: int = 150,
    seed: int = 0,
) -> TunedOutliers:
    """Pick outlier settings that minimise mean imbalance with mean delay <= ``delay_budget``.

    Args:
        sample_lengths: document lengths to tune on (e.g. a sample of the training set); they
            are simulated in a seeded shuffled order.
        num_microbatches, seq_length, cost_model, max_tokens, release: the packer to tune.
        delay_budget: mean per-token delay allowed, in iterations. If no candidate meets it, the
            lowest-delay candidate is returned.
        num_batches: global batches simulated per candidate (fewer if the sample ends).
        seed: shuffle seed.

    Returns:
        TunedOutliers with the winner and its simulated figures.
    """
    lengths = validate_lengths(list(sample_lengths), "auto-tune sample")
    cap = max_tokens or default_max_tokens(seq_length)
    best, best_key = None, None
    cands = candidate_settings(lengths, cost_model, num_microbatches, seq_length, release, cap)
    for ths, tol, wait in cands:
        packer = WLBPacker(
            num_microbatches,
            seq_length,
            cost_model,
            max_tokens=cap,
            outlier_thresholds=ths,
            release=release,
            balance_tol=tol,
            max_wait=wait,
        )
        s = simulate(lengths, packer, num_batches, shuffle=True, seed=seed).summary()
        imb, delay = s["imbalance_mean"], s["delay_iters_mean"]
        key = (0, imb, delay) if delay <= delay_budget else (1, delay, imb)
        if best_key is None or key < best_key:
            best_key, best = key, (ths, tol, wait, imb, delay)
    if best is None:
        raise ValueError(
            f"auto-tune found no candidate: max_tokens={cap} too small for this cost model"
        )
    ths, tol, wait, imb, delay = best
    return TunedOutliers(ths, tol, wait, imb, delay, len(cands))
