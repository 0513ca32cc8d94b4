"""Megatron's process groups, read once from ``parallel_state`` into one explicit object."""

from __future__ import annotations

from dataclasses import dataclass

import torch.distributed as dist
from megatron.core import parallel_state as ps

from wlb.parallel import ParallelLayout


@dataclass
class Groups:
    """Ranks and groups of this process (everything else gets them from here, explicitly).

    Attributes:
        layout: the validated sizes.
        rank: global rank.
        tp_rank, pp_rank, cp_rank, dp_rank: this process's coordinates.
        tp, pp, cp, dp, dp_cp, mp: process groups (dp_cp: DP x CP, where gradients are summed;
            mp: megatron's model-parallel group, TP x PP).
    """

    layout: ParallelLayout
    rank: int
    tp_rank: int
    pp_rank: int
    cp_rank: int
    dp_rank: int
    tp: object
    pp: object
    cp: object
    dp: object
    dp_cp: object
    mp: object

    def is_first_stage(self, vp_stage: int | None = None) -> bool:
        return ps.is_pipeline_first_stage(ignore_virtual=vp_stage is None, vp_stage=vp_stage)

    def is_last_stage(self, vp_stage: int | None = None) -> bool:
        return ps.is_pipeline_last_stage(ignore_virtual=vp_stage is None, vp_stage=vp_stage)

    @property
    def pp_last_rank(self) -> int:
        """Global rank of the last pipeline stage of this process's pipeline."""
        return ps.get_pipeline_model_parallel_last_rank()


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
    from megatron.core.tensor_parallel import model_parallel_cuda_manual_seed

    model_parallel_cuda_manual_seed(seed)  # dropout / SP regions fork this tracker
    return Groups(
        layout=layout,
        rank=dist.get_rank(),
        tp_rank=ps.get_tensor_model_parallel_rank(),
        pp_rank=ps.get_pipeline_model_parallel_rank(),
        cp_rank=ps.get_context_parallel_rank(),
        dp_rank=ps.get_data_parallel_rank(),
        tp=ps.get_tensor_model_parallel_group(),
        pp=ps.get_pipeline_model_parallel_group(),
        cp=ps.get_context_parallel_group(),
        dp=ps.get_data_parallel_group(),
        dp_cp=ps.get_data_parallel_group(with_context_parallel=True),
        mp=ps.get_model_parallel_group(),
    )


def destroy() -> None:
    ps.destroy_model_parallel()
