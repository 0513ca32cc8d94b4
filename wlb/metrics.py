"""One definition of imbalance, shared by the packing benchmark, training logs and tests."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def imbalance(workloads: Sequence[float] | np.ndarray) -> float:
    """Max-over-mean imbalance of a set of parallel work items.

    ``imbalance = max(w) * len(w) / sum(w)``: 1.0 is perfect balance; the paper's Table 2 metric
    (max micro-batch latency x PP / total latency) when ``w`` are the micro-batches of one batch.
    Empty slots count (a micro-batch with no work still occupies a pipeline slot).

    Args:
        workloads: per-item workloads (>= 0).

    Returns:
        The imbalance, or 1.0 when the total is zero.

    Example:
        >>> imbalance([3.0, 1.0])
        1.5
    """
    w = np.asarray(workloads, dtype=np.float64)
    if w.size == 0:
        return 1.0
    total = float(w.sum())
    if total <= 0.0:
        return 1.0
    return float(w.max()) * w.size / total


def imbalance_floor(items: Sequence[float] | np.ndarray, num_bins: int) -> float:
    """Lowest :func:`imbalance` any packing of ``items`` (indivisible) into ``num_bins`` can reach.

    ``max(1, max(items) * num_bins / sum(items))``: the bin holding the largest item has at least
    its workload, and the mean bin is ``sum / num_bins``. A packer whose imbalance is close to
    this floor cannot be beaten by re-packing the same pieces; only cutting or delaying the
    largest piece (WLB's outlier queues) lowers it further.

    Args:
        items: per-piece workloads (>= 0).
        num_bins: number of micro-batches (or ranks) the pieces go to.

    Returns:
        The floor, or 1.0 when there is no work.

    Example:
        >>> imbalance_floor([6.0, 1.0, 1.0], 4)   # the 6 alone is 3x the mean bin of 2
        3.0
    """
    w = np.asarray(items, dtype=np.float64)
    total = float(w.sum()) if w.size else 0.0
    if total <= 0.0:
        return 1.0
    return max(1.0, float(w.max()) * num_bins / total)


def summarize(values: Sequence[float]) -> dict[str, float]:
    """Mean, p50, p99 and max of a series (0.0 for each on an empty series)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return {"mean": 0.0, "p50": 0.0, "p99": 0.0, "max": 0.0}
    return {
        "mean": float(v.mean()),
        "p50": float(np.percentile(v, 50)),
        "p99": float(np.percentile(v, 99)),
        "max": float(v.max()),
    }
