"""Megatron-LM's own ``pretrain()`` with a minimal GPT provider of its own: the reference that
WLB's stock arm is held against, written from Megatron-LM 0.19's ``pretrain_gpt.py`` (its shape:
parse, model config, config container, ``pretrain``), with no WLB code but the CPU patches
(``wlb.megatron.cpu_loop``, which do nothing on a GPU).

    torchrun --nproc_per_node 2 -m tests.helpers.megatron_lm_gpt --mock-data ... (Megatron-LM's
    flags; its GPTDataset / MockGPTDataset, its batch getter)

megatron 0.19 builds the model from the config container's ``GPTModelConfig`` with its own GPT
builder (the layer spec its flags pick: ``--transformer-impl local`` gives the local spec); a
``model_provider`` would not be called, so there is none.

Each iteration's losses come out as Megatron-LM prints them, and with ``WLB_TEST_LOSSES=FILE``
(last pipeline stage, first DP/TP rank) one JSON line per iteration: the token-weighted loss.
"""

from __future__ import annotations

import json
import os
from functools import partial

import torch

from wlb.megatron import cpu_loop

cpu_loop.apply()

from megatron.core import mpu  # noqa: E402
from megatron.core.datasets.blended_megatron_dataset_builder import (  # noqa: E402
    BlendedMegatronDatasetBuilder,
)
from megatron.core.datasets.gpt_dataset import (  # noqa: E402
    GPTDataset,
    GPTDatasetConfig,
    MockGPTDataset,
)
from megatron.core.enums import ModelType  # noqa: E402
from megatron.core.tokenizers.utils.build_tokenizer import build_tokenizer  # noqa: E402
from megatron.core.utils import get_batch_on_this_tp_rank  # noqa: E402
from megatron.training import get_args, pretrain  # noqa: E402
from megatron.training.argument_utils import (  # noqa: E402
    gpt_config_from_args,
    pretrain_cfg_container_from_args,
)
from megatron.training.arguments import parse_and_validate_args  # noqa: E402
from megatron.training.utils import (  # noqa: E402
    get_blend_and_blend_per_split,
    is_first_or_last_pipeline_stage,
)

KEYS = ("tokens", "labels", "loss_mask", "attention_mask", "position_ids")


def get_batch(data_iterator, vp_stage=None):
    args = get_args()
    if not is_first_or_last_pipeline_stage(vp_stage):
        return [None] * len(KEYS)
    tp_rank = mpu.get_tensor_model_parallel_rank()
    batch = {}
    if tp_rank == 0:
        batch = next(data_iterator)
        batch = {k: batch[k] if batch.get(k) is not None else None for k in KEYS}
    batch = get_batch_on_this_tp_rank(
        batch, has_cu_seqlens=False, is_hybrid_cp=False,
        create_attention_mask_in_dataloader=args.create_attention_mask_in_dataloader,
        broadcast_src_rank=mpu.get_tensor_model_parallel_src_rank(),
        broadcast_group=mpu.get_tensor_model_parallel_group(), cp_size=1, tp_rank=tp_rank,
        micro_batch_size=args.micro_batch_size, seq_length=args.seq_length,
        mtp_on_this_rank=False, pipeline_model_parallel_size=args.pipeline_model_parallel_size,
        is_pipeline_first_stage=mpu.is_pipeline_first_stage(),
        is_pipeline_last_stage=mpu.is_pipeline_last_stage())
    return [batch.get(k) for k in KEYS]


def loss_func(loss_mask, output_tensor):
    losses = output_tensor.view(-1).float()
    mask = loss_mask.view(-1).float()
    loss = torch.sum(losses * mask)
    num_tokens = mask.sum().to(torch.int)
    return loss, num_tokens, {"lm loss": torch.cat([loss.detach().view(1), num_tokens.view(1)])}


def forward_step(data_iterator, model):
    tokens, labels, loss_mask, attention_mask, position_ids = get_batch(
        data_iterator, getattr(model, "vp_stage", None))
    output = model(tokens, position_ids, attention_mask, labels=labels, loss_mask=loss_mask)
    return output, partial(loss_func, loss_mask)


def datasets_provider(num_samples, vp_stage=None):
    args = get_args()
    blend, blend_per_split = get_blend_and_blend_per_split(args)
    config = GPTDatasetConfig(
        random_seed=args.seed, sequence_length=args.seq_length, blend=blend,
        blend_per_split=blend_per_split, split=args.split, tokenizer=build_tokenizer(args),
        reset_position_ids=args.reset_position_ids,
        reset_attention_mask=args.reset_attention_mask, eod_mask_loss=args.eod_mask_loss,
        create_attention_mask=args.create_attention_mask_in_dataloader,
        path_to_cache=args.data_cache_path, mmap_bin_files=args.mmap_bin_files)
    cls = MockGPTDataset if args.mock_data else GPTDataset

    def built_here():
        return (mpu.get_tensor_model_parallel_rank() == 0
                and is_first_or_last_pipeline_stage(vp_stage))

    return BlendedMegatronDatasetBuilder(cls, num_samples, built_here, config).build()


datasets_provider.is_distributed = True


def _record_losses(path: str):
    """Wrap megatron's ``training_log`` to write each iteration's loss to ``path``."""
    from megatron.training import training

    log = training.training_log

    def training_log(loss_dict, total_loss_dict, learning_rate, iteration, *args, **kwargs):
        if loss_dict and "lm loss" in loss_dict and mpu.get_data_parallel_rank() == 0 \
                and mpu.get_tensor_model_parallel_rank() == 0:
            value = loss_dict["lm loss"]
            loss = value[0] / value[1] if value.numel() == 2 else value
            with open(path, "a") as f:
                f.write(json.dumps({"iteration": iteration, "lm_loss": float(loss)}) + "\n")
        return log(loss_dict, total_loss_dict, learning_rate, iteration, *args, **kwargs)

    training.training_log = training_log


if __name__ == "__main__":
    args = parse_and_validate_args(args_defaults={"tokenizer_type": "NullTokenizer"})
    if os.environ.get("WLB_TEST_LOSSES"):
        _record_losses(os.environ["WLB_TEST_LOSSES"])
    pretrain(pretrain_cfg_container_from_args(args, gpt_config_from_args(args)),
             datasets_provider, ModelType.encoder_or_decoder, forward_step)
