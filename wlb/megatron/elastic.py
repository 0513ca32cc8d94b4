"""The process groups of elastic CP: every aligned group of a pipeline stage's DP x CP pool.

A rank's place in its pool is ``dp_rank x CP + cp_rank``, so the layout's own CP groups are the
aligned groups of size CP. All groups are created once at start-up, by every process in the same
order (``torch.distributed.new_group`` is collective); each rank keeps the ones it belongs to.

Worked example: DP = 2, CP = 2, TP = PP = 1: pool ranks 0..3; groups of 2 at 0 and 2 (the CP
groups) and one of 4 at 0; rank (dp 1, cp 0) is pool index 2 and keeps (2, 2) and (0, 4).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.distributed as dist


@dataclass
class ElasticGroups:
    """Attributes:
        pool_index: this rank's place in its pool.
        pool: ranks in a pool (DP x CP).
        groups: (first, size) -> process group, for every group of size >= 2 holding this rank.
    """

    pool_index: int
    pool: int
    groups: dict

    def group(self, first: int, size: int):
        """The process group of ``size`` pool ranks from ``first`` (None for one rank)."""
        return None if size == 1 else self.groups[(first, size)]


def build_elastic_groups(g) -> ElasticGroups:
    """Create every aligned pool group (collective over the world). ``g``: this rank's
    ``layout`` (:class:`wlb.parallel.ParallelLayout`) and its ``pp_rank``, ``tp_rank``,
    ``dp_rank``, ``cp_rank``."""
    layout = g.layout
    pool = layout.dp * layout.cp
    me = layout.pool_index(g.dp_rank, g.cp_rank)
    coords = [None] * dist.get_world_size()
    dist.all_gather_object(coords, (g.pp_rank, g.tp_rank, me))
    by_pool: dict[tuple[int, int], dict[int, int]] = {}
    for rank, (pp, tp, i) in enumerate(coords):
        by_pool.setdefault((pp, tp), {})[i] = rank
    mine = {}
    for key in sorted(by_pool):
        ranks_of = by_pool[key]
        size = 2
        while size <= pool:
            for first in range(0, pool - size + 1, size):
                pg = dist.new_group([ranks_of[i] for i in range(first, first + size)])
                if key == (g.pp_rank, g.tp_rank) and first <= me < first + size:
                    mine[(first, size)] = pg
            size *= 2
    return ElasticGroups(me, pool, mine)
