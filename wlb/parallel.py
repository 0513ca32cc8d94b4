"""The 4D layout (TP x CP x PP x DP): its sizes, and the validated layout of a training run.

:class:`ParallelDims` is the one definition of the four sizes (the cluster simulator's layouts
are these); :class:`ParallelLayout` is a run's layout, validated against its model and batch,
and hands out its :attr:`ParallelLayout.dims`.
"""

from __future__ import annotations

from dataclasses import dataclass


class LayoutError(ValueError):
    """A parallel size or batch size that does not fit (the message prints every factor)."""


@dataclass(frozen=True)
class ParallelDims:
    """The parallel sizes of one job.

    Attributes:
        tp: tensor-model-parallel size.
        cp: context-parallel size.
        pp: pipeline-model-parallel size.
        dp: data-parallel size (replicas).
        vpp: virtual pipeline stages per PP rank (1: no interleaving).
    """

    tp: int = 1
    cp: int = 1
    pp: int = 1
    dp: int = 1
    vpp: int = 1

    def __post_init__(self) -> None:
        for k in ("tp", "cp", "pp", "dp", "vpp"):
            if getattr(self, k) < 1:
                raise LayoutError(f"layout {k}={getattr(self, k)} must be >= 1")

    @property
    def world_size(self) -> int:
        return self.tp * self.cp * self.pp * self.dp

    def describe(self) -> str:
        """Short label, e.g. ``TP8 CP2 PP4 DP1 vpp=2``."""
        v = f" vpp={self.vpp}" if self.vpp > 1 else ""
        return f"TP{self.tp} CP{self.cp} PP{self.pp} DP{self.dp}{v}"


@dataclass(frozen=True)
class ParallelLayout:
    """Sizes of one run; ``__post_init__`` rejects every combination that cannot train.

    Attributes:
        world_size: processes in the job.
        tp: tensor-model-parallel size.
        pp: pipeline-model-parallel size.
        cp: context-parallel size.
        vpp: virtual pipeline stages per PP rank (1: no interleaving).
        num_layers: transformer layers of the model.
        num_attention_heads, num_query_groups: heads (TP splits both).
        global_batch_size: micro-batches (packed sequences) per iteration, over all DP ranks.
        seq_length: tokens per stock micro-batch (the context length).
        sequence_parallel: TP sequence parallelism (local sequence split over TP ranks).
    """

    world_size: int
    tp: int = 1
    pp: int = 1
    cp: int = 1
    vpp: int = 1
    num_layers: int = 1
    num_attention_heads: int = 1
    num_query_groups: int = 1
    global_batch_size: int = 1
    seq_length: int = 1
    sequence_parallel: bool = False

    def _factors(self) -> str:
        return (
            f"world_size={self.world_size}, tp={self.tp}, pp={self.pp}, cp={self.cp}, "
            f"dp={self.world_size // max(self.tp * self.pp * self.cp, 1)}, vpp={self.vpp}"
        )

    def __post_init__(self) -> None:
        for name in ("world_size", "tp", "pp", "cp", "vpp", "num_layers", "num_attention_heads",
                     "num_query_groups", "global_batch_size", "seq_length"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise LayoutError(f"{name}={value!r} must be a positive integer")
        mp = self.tp * self.pp * self.cp
        if self.world_size % mp:
            raise LayoutError(
                f"world_size={self.world_size} is not divisible by tp*pp*cp={mp} "
                f"(tp={self.tp}, pp={self.pp}, cp={self.cp})"
            )
        if self.num_attention_heads % self.tp or self.num_query_groups % self.tp:
            raise LayoutError(
                f"num_attention_heads={self.num_attention_heads} and "
                f"num_query_groups={self.num_query_groups} must be divisible by tp={self.tp}"
            )
        if self.num_attention_heads % self.num_query_groups:
            raise LayoutError(
                f"num_attention_heads={self.num_attention_heads} is not divisible by "
                f"num_query_groups={self.num_query_groups}"
            )
        if self.num_layers % (self.pp * self.vpp):
            raise LayoutError(
                f"num_layers={self.num_layers} is not divisible by pp*vpp={self.pp * self.vpp} "
                f"({self._factors()})"
            )
        if self.vpp > 1 and self.pp == 1:
            raise LayoutError(f"virtual pipeline stages need pp > 1 ({self._factors()})")
        if self.sequence_parallel and self.tp == 1:
            raise LayoutError("--sequence-parallel needs tensor-model-parallel-size > 1")
        if self.global_batch_size % self.dp:
            raise LayoutError(
                f"global_batch_size={self.global_batch_size} is not divisible by dp={self.dp} "
                f"({self._factors()}); every DP rank needs the same number of micro-batches"
            )
        if self.vpp > 1 and self.microbatches_per_rank % self.pp:
            raise LayoutError(
                f"interleaved pipeline: micro-batches per DP rank "
                f"({self.global_batch_size}/{self.dp}={self.microbatches_per_rank}) must be a "
                f"multiple of pp={self.pp} ({self._factors()})"
            )
        if self.seq_length % self.pad_multiple:
            raise LayoutError(
                f"seq_length={self.seq_length} must be a multiple of {self.pad_multiple} "
                f"(2*cp{' * tp under sequence parallelism' if self.sequence_parallel else ''})"
            )

    @property
    def dp(self) -> int:
        return self.world_size // (self.tp * self.pp * self.cp)

    @property
    def dims(self) -> ParallelDims:
        return ParallelDims(self.tp, self.cp, self.pp, self.dp, self.vpp)

    @property
    def microbatches_per_rank(self) -> int:
        return self.global_batch_size // self.dp

    @property
    def pad_multiple(self) -> int:
        """Every packed micro-batch is padded to a multiple of this many tokens.

        2*CP so each CP rank holds the same count; times TP under sequence parallelism so the
        local sequence splits evenly over TP ranks. Example: cp=2, tp=2 with SP -> 8.
        """
        m = 2 * self.cp if self.cp > 1 else 1
        return m * (self.tp if self.sequence_parallel else 1)

    def coordinates(self, rank: int) -> dict[str, int]:
        """The (tp, cp, dp, pp) ranks of global ``rank`` in megatron-core's default order
        ("tp-cp-ep-dp-pp": TP varies fastest, PP slowest).

        Example: world 16, tp=2, cp=2, pp=2 (dp=2): rank 13 = 1 + 2 x (0 + 2 x (1 + 2 x 1)) ->
        tp 1, cp 0, dp 1, pp 1.
        """
        if not 0 <= rank < self.world_size:
            raise LayoutError(f"rank={rank} is outside world_size={self.world_size}")
        tp, rest = rank % self.tp, rank // self.tp
        cp, rest = rest % self.cp, rest // self.cp
        return {"tp": tp, "cp": cp, "dp": rest % self.dp, "pp": rest // self.dp}

    def pool_index(self, dp_rank: int, cp_rank: int) -> int:
        """A rank's place in its pipeline stage's DP x CP pool (elastic CP): ``dp_rank x CP +
        cp_rank``, so the layout's own CP groups are the pool's aligned groups of size CP."""
        return dp_rank * self.cp + cp_rank

    def describe(self) -> str:
        return self._factors() + f", sp={self.sequence_parallel}"
