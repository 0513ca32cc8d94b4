#!/usr/bin/env python3
"""Pretrain GPT in Megatron-LM's own training loop (megatron-core 0.19's ``pretrain()``) with
WLB-LLM's flags: the shape of Megatron-LM's ``pretrain_gpt.py``, providers from ``wlb.megatron``.

    torchrun --nproc_per_node 2 pretrain_gpt_wlb.py --wlb-packing megatron --mock-data ...

``--wlb-packing megatron`` is stock Megatron (Megatron-LM's datasets, samplers, batches and
attention); any other packing is WLB's data path at megatron's hooks (an external data iterator,
variable-length THD micro-batches, WLB's CP attention). On a machine without
CUDA, ``wlb.megatron.cpu_loop`` lets the loop run on the CPU with gloo. Bad input is one line
and exit status 2.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main(argv: list[str] | None = None) -> int:
    from wlb.megatron import cpu_loop

    cpu_loop.apply()  # before megatron reads its flags (it asks for the GPU's architecture)
    from megatron.core.enums import ModelType
    from megatron.training import pretrain
    from megatron.training.argument_utils import pretrain_cfg_container_from_args

    from wlb.megatron import gpt, stock_data, wlb_data
    from wlb.megatron.arguments import ArgumentError, parse_and_validate, say_once
    from wlb.megatron.restart import attempt_store

    try:
        # Megatron-LM's pretrain_gpt.py default tokenizer
        args = parse_and_validate(argv, args_defaults={"tokenizer_type": "GPT2BPETokenizer"})
    except ArgumentError as e:
        say_once(f"{os.path.basename(__file__)}: error: {e}")
        return 2
    if args.preflight_only:
        return 0
    if args.wlb_convert_optimizer_save:  # the conversion step, then exit
        from wlb.megatron.convert import convert_optimizer

        convert_optimizer(args)
        _close_process_group()
        return 0
    if args.wlb_stock:  # --wlb-packing megatron: stock Megatron
        provider, forward_step = stock_data.datasets_provider, gpt.forward_step
    else:
        provider, forward_step = wlb_data.datasets_provider, gpt.wlb_forward_step
    try:
        pretrain(pretrain_cfg_container_from_args(args, gpt.model_config(args)), provider,
                 ModelType.encoder_or_decoder, forward_step, store=attempt_store())
    except SystemExit as e:  # megatron's own exits (--exit-interval, --exit-duration-in-mins)
        if e.code not in (0, None):
            raise
    _close_process_group()
    return 0


def _close_process_group() -> None:
    """Tear the process group down before the interpreter does: gloo's threads left to static
    destruction can abort the process at exit ("terminate called without an active
    exception"), which torchrun reports as a failed run."""
    import torch

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
