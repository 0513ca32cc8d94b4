"""Adaptive per-micro-batch choice of CP sharding: per_seq / per_doc (paper §5.3), or mixed.

Each strategy gives every CP rank a list of kernel shapes (query segments with their key
lengths). A segment's latency is predicted from an offline table of achieved throughput versus
(query length, key length) -- measured by ``tools/calibrate_cost_model.py`` on the target backend --
after padding the query length up to the kernel's tile (128 for FlashAttention, 1 for CPU SDPA).
A strategy's latency is its slowest rank's; the faster strategy wins (:func:`choose_strategy`,
which also serves the cluster simulator with its own per-rank predictor).
:class:`StrategyChooser` applies that choice to every micro-batch of a run.

Table JSON format (extra keys are allowed and ignored; a cost-model calibration file from
``tools/calibrate_cost_model.py`` carries one under its ``kernel_table`` key)::

    {"backend": "torch-sdpa-cpu", "tile_q": 1, "heads": 4, "head_dim": 64,
     "q_lens": [1, 8, ...], "kv_lens": [1, 8, ...],
     "pairs_per_us": [[...], ...]}     # [len(q_lens)][len(kv_lens)], fwd+bwd; NaN where kv < q
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from wlb.cp.shard import Segment, segment_arrays
from wlb.cp.strategy import PAPER_STRATEGIES, Strategy

DEFAULT_TABLE = os.path.join(os.path.dirname(__file__), "tables", "cpu_torch_sdpa.json")

#: predicted latency of every CP rank: (doc_lens, cp_size, strategy) -> [per-rank latency]
RankPredictor = Callable[[Sequence[int], int, str], Sequence[float]]


@dataclass(frozen=True)
class KernelTable:
    """Achieved attention throughput (causal pairs per microsecond, fwd+bwd) on a grid."""

    backend: str
    tile_q: int
    q_lens: tuple[int, ...]
    kv_lens: tuple[int, ...]
    pairs_per_us: tuple[tuple[float, ...], ...]

    @classmethod
    def from_json(cls, path: str = DEFAULT_TABLE) -> KernelTable:
        """Read a table file, or the ``kernel_table`` entry of a cost-model calibration file."""
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
        if isinstance(d, dict) and isinstance(d.get("kernel_table"), dict):
            d = d["kernel_table"]
        for key in ("backend", "q_lens", "kv_lens", "pairs_per_us"):
            if key not in d:
                raise ValueError(f"kernel table {path!r} lacks key {key!r}")
        grid = d["pairs_per_us"]
        if len(grid) != len(d["q_lens"]) or any(len(r) != len(d["kv_lens"]) for r in grid):
            raise ValueError(f"kernel table {path!r}: pairs_per_us shape does not match the grid")
        return cls(
            d["backend"],
            int(d.get("tile_q", 1)),
            tuple(d["q_lens"]),
            tuple(d["kv_lens"]),
            tuple(tuple(float(x) for x in r) for r in grid),
        )

    def __post_init__(self) -> None:
        grid = np.asarray(self.pairs_per_us, dtype=np.float64)
        ok = np.isfinite(grid) & (grid > 0)  # NaN / empty cells are skipped
        row_best = np.where(ok, grid, -np.inf).max(axis=1)
        object.__setattr__(self, "_log_grid", np.where(ok, np.log2(np.where(ok, grid, 1.0)), 0))
        object.__setattr__(self, "_ok", ok)
        object.__setattr__(self, "_row_best", np.where(np.isfinite(row_best), row_best, 1.0))

    def _tput(self, q, kv):
        """Throughput at (q, kv), scalars or arrays: bilinear interpolation in log2 space,
        clamped to the grid, skipping NaN cells (a point with none around it takes its row's
        best cell)."""

        def bracket(xs, x):  # lower and upper grid index and the log2 fraction between them
            xs = np.asarray(xs, dtype=np.float64)
            x = np.clip(x, xs[0], xs[-1])
            if xs.size == 1:
                zero = np.zeros(np.shape(x), dtype=np.int64)
                return zero, zero, np.zeros(np.shape(x))
            i = np.clip(np.searchsorted(xs, x, side="right") - 1, 0, xs.size - 2)
            lo, hi = np.log2(xs[i]), np.log2(xs[i + 1])
            with np.errstate(invalid="ignore", divide="ignore"):
                f = np.where(hi == lo, 0.0, (np.log2(x) - lo) / (hi - lo))
            return i, i + 1, f

        i0, i1, fq = bracket(self.q_lens, np.asarray(q, dtype=np.float64))
        j0, j1, fk = bracket(self.kv_lens, np.asarray(kv, dtype=np.float64))
        acc = wsum = 0.0
        for i, wi in ((i0, 1 - fq), (i1, fq)):
            for j, wj in ((j0, 1 - fk), (j1, fk)):
                w = np.where((wi * wj > 0) & self._ok[i, j], wi * wj, 0.0)
                acc = acc + w * self._log_grid[i, j]
                wsum = wsum + w
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.where(wsum > 0, np.exp2(acc / np.where(wsum > 0, wsum, 1.0)),
                           self._row_best[i0])
        return float(out) if out.ndim == 0 else out

    def segments_us(self, q: np.ndarray, kv: np.ndarray) -> np.ndarray:
        """Predicted fwd+bwd microseconds of segments with ``q`` queries whose last query sees
        ``kv`` keys (arrays; queries padded to the tile as in :func:`pad_to_tile`)."""
        q, kv = np.asarray(q, dtype=np.int64), np.asarray(kv, dtype=np.int64)
        qp = -(-q // self.tile_q) * self.tile_q
        kvp = kv + (qp - q)
        return (qp * (kvp - qp) + qp * (qp + 1) // 2) / self._tput(qp, kvp)

    def segment_us(self, q: int, kv: int) -> float:
        """Predicted fwd+bwd microseconds of one segment (tile-padded queries)."""
        return float(self.segments_us(np.array([q]), np.array([kv]))[0])

    def predict(self, doc_lens: Sequence[int], cp_size: int, strategy: Strategy) -> list[float]:
        """Predicted attention microseconds of every CP rank (a :data:`RankPredictor`)."""
        return predict(doc_lens, cp_size, strategy, self)


def predict_rank_us(segments: Sequence[Segment], table: KernelTable) -> float:
    """Predicted attention microseconds of one rank's segments."""
    if not segments:
        return 0.0
    return float(table.segments_us([s.length for s in segments],
                                   [s.start + s.length for s in segments]).sum())


def predict(
    doc_lens: Sequence[int], cp_size: int, strategy: Strategy, table: KernelTable
) -> list[float]:
    """Predicted attention microseconds of every CP rank under ``strategy``: every rank's
    segments at once (:func:`wlb.cp.shard.segment_arrays`), one table lookup over the arrays."""
    seg = segment_arrays(doc_lens, cp_size, strategy)
    us = table.segments_us(seg.length, seg.start + seg.length)
    return np.bincount(seg.rank, weights=us, minlength=cp_size).tolist()


def choose_strategy(
    doc_lens: Sequence[int], cp_size: int, predictor: KernelTable | RankPredictor,
    candidates: Sequence[Strategy] = PAPER_STRATEGIES,
) -> tuple[Strategy, dict[str, float]]:
    """Pick the strategy with the lowest predicted slowest-rank latency.

    Args:
        doc_lens, cp_size: the micro-batch and the CP group size. At CP=1 every strategy is the
            same layout: per_seq, with no prediction.
        predictor: achieved-throughput table of the attention kernel, or any per-rank latency
            predictor (the cluster simulator passes its hardware model).
        candidates: strategies to choose from (default: the paper's per_seq / per_doc; the
            training default adds "mixed"). Ties go to the alphabetically first.

    Returns:
        (strategy, {strategy: predicted max-rank latency}).
    """
    if cp_size == 1:
        return "per_seq", {}
    rank_latency = predictor.predict if isinstance(predictor, KernelTable) else predictor
    pred = {s: max(rank_latency(doc_lens, cp_size, s)) for s in candidates}
    return min(candidates, key=lambda s: (pred[s], s)), pred


class StrategyChooser:
    """The CP strategy of every micro-batch of a run, from a set of candidates.

    Args:
        candidates: the strategies to pick from (``wlb.config.cp_candidates`` maps the
            ``--wlb-cp-sharding`` flag to them); a single one is used as it is.
        cp_size: the CP group size (CP=1: always per_seq, the one layout there is).
        predictor: per-rank latency predictor for more than one candidate (a KernelTable).

    Example:
        >>> StrategyChooser(("per_doc",), 2, None)((5, 3))
        'per_doc'
    """

    def __init__(self, candidates: Sequence[Strategy], cp_size: int,
                 predictor: KernelTable | RankPredictor | None) -> None:
        if len(candidates) > 1 and cp_size > 1 and predictor is None:
            raise ValueError(f"choosing among {tuple(candidates)} needs a latency predictor")
        self.candidates, self.cp, self.table = tuple(candidates), cp_size, predictor

    def __call__(self, doc_lens: Sequence[int]) -> Strategy:
        if self.cp == 1:
            return "per_seq"
        if len(self.candidates) == 1:
            return self.candidates[0]
        return choose_strategy(doc_lens, self.cp, self.table, self.candidates)[0]
