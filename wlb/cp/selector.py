"""Adaptive per-micro-batch choice of CP sharding: per_seq / per_doc (paper §5.3), or mixed.

Each strategy gives every CP rank a list of kernel shapes (query segments with their key
lengths). A segment's latency is predicted from an offline table of achieved throughput versus
(query length, key length) -- measured by ``tools/profile_attention.py`` on the target backend --
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

import bisect
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from wlb.cp.shard import Segment, causal_pairs, pad_to_tile, rank_segments
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

    def _tput(self, q: float, kv: float) -> float:
        """Bilinear interpolation in log2 space, clamped to the grid, skipping NaN cells."""

        def bracket(xs, x):
            x = min(max(x, xs[0]), xs[-1])
            i = min(max(bisect.bisect_right(xs, x) - 1, 0), len(xs) - 2) if len(xs) > 1 else 0
            if len(xs) == 1:
                return 0, 0, 0.0
            lo, hi = math.log2(xs[i]), math.log2(xs[i + 1])
            return i, i + 1, 0.0 if hi == lo else (math.log2(x) - lo) / (hi - lo)

        i0, i1, fq = bracket(self.q_lens, q)
        j0, j1, fk = bracket(self.kv_lens, kv)
        acc = wsum = 0.0
        for i, wi in ((i0, 1 - fq), (i1, fq)):
            for j, wj in ((j0, 1 - fk), (j1, fk)):
                v = self.pairs_per_us[i][j]
                if wi * wj > 0 and v == v and v > 0:  # skip NaN / empty cells
                    acc += wi * wj * math.log2(v)
                    wsum += wi * wj
        if wsum == 0:
            row = [v for v in self.pairs_per_us[i0] if v == v and v > 0]
            return max(row) if row else 1.0
        return 2 ** (acc / wsum)

    def segment_us(self, q: int, kv: int) -> float:
        """Predicted fwd+bwd microseconds of one segment (tile-padded queries)."""
        qp, kvp = pad_to_tile(q, kv, self.tile_q)
        return causal_pairs(qp, kvp) / self._tput(qp, kvp)

    def predict(self, doc_lens: Sequence[int], cp_size: int, strategy: Strategy) -> list[float]:
        """Predicted attention microseconds of every CP rank (a :data:`RankPredictor`)."""
        return predict(doc_lens, cp_size, strategy, self)


def predict_rank_us(segments: Sequence[Segment], table: KernelTable) -> float:
    return sum(table.segment_us(s.length, s.start + s.length) for s in segments)


def predict(
    doc_lens: Sequence[int], cp_size: int, strategy: Strategy, table: KernelTable
) -> list[float]:
    """Predicted attention microseconds of every CP rank under ``strategy``."""
    out = []
    for r in range(cp_size):
        front, back = rank_segments(doc_lens, cp_size, r, strategy)
        out.append(predict_rank_us(front + back, table))
    return out


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
