"""megatron-core's own hybrid context parallel planner (``BalancedCPScheduler``), run on
sub-sample lengths for comparison with ``wlb.elastic.planner`` (no process group: it reads only
the DP x CP group's size)."""

from __future__ import annotations

from megatron.core.pipeline_parallel.hybrid_cp_schedule import BalancedCPScheduler


class _PoolSize:
    """The one thing ``BalancedCPScheduler`` asks of its ``dp_cp_group``."""

    def __init__(self, n: int) -> None:
        self.n = n

    def size(self) -> int:
        return self.n


def hybrid_cp_groups(seqlens: list[int], pool: int, max_seq_len_per_rank: int
                     ) -> list[list[list[int]]]:
    """megatron-core's micro-batch groups for these sub-samples: for each group, the sample
    indices each of the ``pool`` ranks runs (a sample on k ranks is CP-sharded over them)."""
    sched = BalancedCPScheduler(max_seq_len_per_rank, _PoolSize(pool))
    _, ids = sched.get_groups_and_subsamples(list(enumerate(seqlens)), None)
    return ids
