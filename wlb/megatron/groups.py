"""Megatron's process groups, read once from ``parallel_state`` into one explicit object, and
the model-parallel RNG tracker they seed."""

from __future__ import annotations

from dataclasses import dataclass

import torch.distributed as dist
from megatron.core import parallel_state as ps
from megatron.core.tensor_parallel import get_cuda_rng_tracker, model_parallel_cuda_manual_seed
from torch.distributed import ProcessGroup

from wlb.parallel import ParallelLayout


@dataclass
class Groups:
    """Ranks and groups of this process (everything else gets them from here, explicitly).

    Attributes:
        layout: the validated sizes.
        rank: global rank.
        tp_rank, pp_rank, cp_rank, dp_rank: this process's coordinates.
        pp_last_rank: global rank of the last pipeline stage of this process's pipeline.
        tp, pp, cp, dp, dp_cp, mp: process groups (dp_cp: DP x CP, where gradients are summed;
            mp: megatron's model-parallel group, TP x PP).
    """

    layout: ParallelLayout
    rank: int
    tp_rank: int
    pp_rank: int
    cp_rank: int
    dp_rank: int
    pp_last_rank: int
    tp: ProcessGroup
    pp: ProcessGroup
    cp: ProcessGroup
    dp: ProcessGroup
    dp_cp: ProcessGroup
    mp: ProcessGroup

    def is_first_stage(self, vp_stage: int | None = None) -> bool:
        """First pipeline stage (and, given ``vp_stage``, its first virtual chunk)."""
        return self.pp_rank == 0 and (vp_stage is None or vp_stage == 0)

    def is_last_stage(self, vp_stage: int | None = None) -> bool:
        """Last pipeline stage (and, given ``vp_stage``, its last virtual chunk)."""
        last_chunk = vp_stage is None or vp_stage == self.layout.vpp - 1
        return self.pp_rank == self.layout.pp - 1 and last_chunk


def initialize(layout: ParallelLayout, seed: int) -> Groups:
    """Create megatron's groups for ``layout`` and seed its RNG tracker (torch.distributed
    must be initialised)."""
    if dist.get_world_size() != layout.world_size:
        raise RuntimeError(
            f"layout expects world_size={layout.world_size}, torch.distributed has "
            f"{dist.get_world_size()}"
        )
    ps.destroy_model_parallel()
    ps.initialize_model_parallel(
        tensor_model_parallel_size=layout.tp,
        pipeline_model_parallel_size=layout.pp,
        virtual_pipeline_model_parallel_size=layout.vpp if layout.vpp > 1 else None,
        context_parallel_size=layout.cp,
    )
    model_parallel_cuda_manual_seed(seed)  # dropout / SP regions fork this tracker
    return Groups(
        layout=layout,
        rank=dist.get_rank(),
        tp_rank=ps.get_tensor_model_parallel_rank(),
        pp_rank=ps.get_pipeline_model_parallel_rank(),
        cp_rank=ps.get_context_parallel_rank(),
        dp_rank=ps.get_data_parallel_rank(),
        pp_last_rank=ps.get_pipeline_model_parallel_last_rank(),
        tp=ps.get_tensor_model_parallel_group(),
        pp=ps.get_pipeline_model_parallel_group(),
        cp=ps.get_context_parallel_group(),
        dp=ps.get_data_parallel_group(),
        dp_cp=ps.get_data_parallel_group(with_context_parallel=True),
        mp=ps.get_model_parallel_group(),
    )


def destroy() -> None:
    ps.destroy_model_parallel()


def rng_tracker_states() -> dict:
    """States of megatron's model-parallel RNG tracker (for checkpoints)."""
    return get_cuda_rng_tracker().get_states()


def set_rng_tracker_states(states: dict) -> None:
    """Restore what :func:`rng_tracker_states` returned."""
    get_cuda_rng_tracker().set_states(states)
