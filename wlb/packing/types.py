"""Plain data types of the packing layer: document pieces and per-batch plans."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import NamedTuple


class Piece(NamedTuple):
    """A contiguous run of one document's tokens placed as a unit.

    Attributes:
        doc_id: index of the document in the dataset (0-based, file order).
        offset: first token of the piece inside its document.
        length: number of tokens.
        arrival: global-batch index at which the piece entered the packer (for delay accounting).
    """

    doc_id: int
    offset: int
    length: int
    arrival: int


MicroBatch = list[Piece]


def packed_seq_lens(lengths: list[int], pad_multiple: int = 1) -> tuple[int, ...]:
    """A micro-batch's ``seq_lens``: the lengths of its attention units as training lays them
    out, its pieces, then one pad document up to a multiple of ``pad_multiple``; an empty
    micro-batch is a single pad document of ``max(pad_multiple, 2)`` tokens (``wlb.data.collate``
    and the simulator's replay agree).

    Example: ``packed_seq_lens([3, 2], 4) == (3, 2, 3)``; ``packed_seq_lens([], 4) == (4,)``.
    """
    if not lengths:
        return (max(pad_multiple, 2),)
    pad = -sum(lengths) % pad_multiple
    return (*lengths, pad) if pad else tuple(lengths)


@dataclass
class BatchPlan:
    """What one training iteration trains: N micro-batches and the DP rank of each.

    Attributes:
        step: global-batch (iteration) index, 0-based.
        microbatches: N lists of pieces; the token order inside a micro-batch is list order.
        dp_ranks: DP rank that trains micro-batch j; each rank gets N / DP of them.
    """

    step: int
    microbatches: list[MicroBatch]
    dp_ranks: list[int] = field(default_factory=list)

    @property
    def num_tokens(self) -> int:
        return sum(p.length for mb in self.microbatches for p in mb)

    def lengths(self) -> list[list[int]]:
        return [[p.length for p in mb] for mb in self.microbatches]

    def for_dp_rank(self, rank: int) -> list[MicroBatch]:
        """Micro-batches this DP rank trains, in plan order."""
        return [mb for mb, r in zip(self.microbatches, self.dp_ranks) if r == rank]

    def to_json_dict(self) -> dict:
        """``{"batch": i, "microbatches": [[[doc_id, length], ...], ...]}`` (the dump format)."""
        mbs = [[[p.doc_id, p.length] for p in mb] for mb in self.microbatches]
        return {"batch": self.step, "microbatches": mbs, "dp_ranks": self.dp_ranks}

    def digest(self) -> str:
        """Stable hash of the plan (ranks compare it to prove they computed the same plan)."""
        rows = [[[p.doc_id, p.offset, p.length] for p in mb] for mb in self.microbatches]
        blob = json.dumps([self.step, rows, self.dp_ranks], separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def microbatch_workloads(mbs: list[MicroBatch], cost) -> list[float]:
    """Cost-model workload of every micro-batch: the sum of its pieces' ``W(d)``.

    ``cost`` is a :class:`wlb.cost_model.CostModel` (anything with ``doc_workload``).
    """
    w = cost.doc_workload
    return [sum(w(p.length) for p in mb) for mb in mbs]


def assign_dp_ranks(workloads: list[float], dp_size: int) -> list[int]:
    """Give N micro-batches to ``dp_size`` ranks, N/dp each, balancing per-rank total workload.

    Longest-processing-time with a per-rank slot limit: micro-batches in descending workload go
    to the least-loaded rank that still has a free slot. Deterministic (ties by index).

    Example:
        >>> assign_dp_ranks([5.0, 1.0, 4.0, 2.0], 2)
        [0, 0, 1, 1]
    """
    n = len(workloads)
    if dp_size <= 0 or n % dp_size:
        raise ValueError(f"{n} micro-batches cannot be split evenly over dp_size={dp_size}")
    per_rank = n // dp_size
    load = [0.0] * dp_size
    slots = [per_rank] * dp_size
    ranks = [0] * n
    for j in sorted(range(n), key=lambda i: (-workloads[i], i)):
        r = min((r for r in range(dp_size) if slots[r]), key=lambda r: (load[r], r))
        ranks[j] = r
        load[r] += workloads[j]
        slots[r] -= 1
    return ranks
