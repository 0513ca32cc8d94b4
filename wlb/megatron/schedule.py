"""megatron-core's pipeline schedule (1F1B, interleaved 1F1B, or none) for one iteration."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from megatron.core.pipeline_parallel import get_forward_backward_func


def forward_backward(forward_step: Callable, data: Iterator | list[Iterator], model, *,
                     num_microbatches: int, seq_length: int, pp_size: int,
                     vpp_size: int, forward_only: bool = False) -> list[dict]:
    """Run the forward and backward of ``num_microbatches`` micro-batches through megatron's
    schedule for ``pp_size`` stages of ``vpp_size`` virtual chunks each (passed explicitly, not
    read from ``parallel_state``).

    Args:
        forward_step: megatron's ``forward_step_func(data_iterator, model)``.
        data: one iterator, or one per virtual chunk.
        model: the model chunk, or the list of chunks under VPP.
        num_microbatches: micro-batches this rank runs.
        seq_length: nominal sequence length (megatron's buffers; variable lengths are on).
        pp_size, vpp_size: pipeline stages and virtual chunks per stage (1: no interleaving).
        forward_only: no backward (validation).

    Returns:
        The loss reports of the micro-batches (last stage; empty elsewhere).
    """
    fb = get_forward_backward_func(pp_size=pp_size, vp_size=vpp_size if vpp_size > 1 else None)
    return fb(
        forward_step_func=forward_step,
        data_iterator=data,
        model=model,
        num_microbatches=num_microbatches,
        seq_length=seq_length,
        micro_batch_size=1,
        forward_only=forward_only,
    )
