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
