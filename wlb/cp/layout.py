"""Where every token of a micro-batch lives across a CP group: index tensors for the collectives.

Each rank holds its shard of the micro-batch (``wlb.cp.shard.shard_positions``) in storage order.
The K/V all-gather fills a ``[cp * t_max]`` buffer, rank r's rows at ``[r * t_max, r * t_max +
n_r)`` (padded to the largest rank's count ``t_max``); :class:`CPLayout` says which of those rows
are real tokens (``src_rows``) and which global position each belongs to (``dst_pos``).

Worked example (per_doc, CP=2, doc_lens=(8, 6); see :mod:`wlb.cp.shard`): rank 0 holds global
positions [0, 1, 8, 9, 6, 7, 13], rank 1 [2, 3, 10, 11, 4, 5, 12]; both hold 7, so t_max = 7,
src_rows = [0..6, 7..13] and dst_pos = [0, 1, 8, 9, 6, 7, 13, 2, 3, 10, 11, 4, 5, 12].
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch

from wlb.cp.shard import Segment, rank_segments, shard_positions


@dataclass(frozen=True)
class CPLayout:
    """Everything one rank needs to run CP attention on one micro-batch.

    Attributes:
        total: tokens in the micro-batch (T).
        cp_size, cp_rank: group size and this rank.
        t_max: largest per-rank token count (collective buffers are padded to it).
        segments: this rank's query segments in storage order (front chunks, then back chunks).
        src_rows: rows of the gathered [cp * t_max] buffer that hold real tokens ...
        dst_pos: ... and the global positions they belong to (same length: T).
    """

    total: int
    cp_size: int
    cp_rank: int
    t_max: int
    segments: tuple[Segment, ...]
    src_rows: torch.Tensor
    dst_pos: torch.Tensor

    @property
    def local_tokens(self) -> int:
        return sum(s.length for s in self.segments)


@lru_cache(maxsize=128)
def build_layout(doc_lens: tuple[int, ...], cp_size: int, cp_rank: int, strategy: str,
                 device: str = "cpu") -> CPLayout:
    """Layout of ``doc_lens`` for ``cp_rank``, index tensors on ``device`` (cached: the same
    micro-batch serves every layer)."""
    src, dst, counts = [], [], []
    for r in range(cp_size):
        pos = shard_positions(doc_lens, cp_size, r, strategy)
        counts.append(len(pos))
        dst.extend(pos)
    front, back = rank_segments(doc_lens, cp_size, cp_rank, strategy)
    t_max = max(counts)
    for r, n in enumerate(counts):
        src.extend(range(r * t_max, r * t_max + n))
    return CPLayout(
        total=sum(doc_lens),
        cp_size=cp_size,
        cp_rank=cp_rank,
        t_max=t_max,
        segments=front + back,
        src_rows=torch.tensor(src, dtype=torch.long, device=device),
        dst_pos=torch.tensor(dst, dtype=torch.long, device=device),
    )
