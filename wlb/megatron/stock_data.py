"""Stock Megatron's data path inside Megatron-LM's ``pretrain()``: the arm WLB is compared with.

Megatron's own ``GPTDataset`` / ``MockGPTDataset`` / ``BlendedDataset`` (built by
``BlendedMegatronDatasetBuilder`` from Megatron-LM's data flags), Megatron-LM's samplers (chosen by
``pretrain()`` from ``--dataloader-type``), and a batch getter of Megatron-LM's
``pretrain_gpt.py`` shape over megatron-core's own steps: the TP broadcast
(``get_batch_on_this_tp_rank``), the flattening of THD micro-batches
(``flatten_batch_for_packed_sequences``) and the CP slicing (``get_batch_on_this_cp_rank``).

Attention is what Megatron-LM's flags say: causal over the whole sample by default; document
masked with ``--reset-attention-mask`` (a dense mask per sample, megatron's local attention takes
it) or with ``--dataloader-inter-document-masking`` (``cu_seqlens``; :func:`packed_seq_params`).

On megatron's local layers, which have no CP attention, stock CP runs through WLB's attention
(:func:`on_wlb_attention`, :func:`wlb_cp_params`): the same tokens on each CP rank as megatron's
slicing gives, attended as megatron's CP attention would (per sequence), RoPE applied per token
inside that attention.

One deliberate difference: with ``cu_seqlens`` the dataset is built on every pipeline stage, since
every stage's attention needs the document lengths; megatron 0.19 builds it on the first and last
stage only (``is_dataset_built_on_rank``) and would read an absent iterator in a middle stage.
"""

from __future__ import annotations

import numpy as np
import torch
from megatron.core import mpu
from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig, MockGPTDataset
from megatron.core.packed_seq_params import PackedSeqParams
from megatron.core.tokenizers.utils.build_tokenizer import build_tokenizer
from megatron.core.utils import (
    flatten_batch_for_packed_sequences,
    get_batch_on_this_cp_rank,
    get_batch_on_this_tp_rank,
)
from megatron.training import get_args, print_rank_0
from megatron.training.utils import get_blend_and_blend_per_split, is_first_or_last_pipeline_stage

from wlb.cp import shard_position_array
from wlb.megatron.attention import WLBPackedSeqParams

#: what :func:`get_batch` returns (None where this stage or these flags have no such tensor)
BATCH_KEYS = ("tokens", "labels", "loss_mask", "attention_mask", "position_ids", "cu_seqlens",
              "cu_seqlens_padded", "max_seqlen")


def dataset_config(args) -> GPTDatasetConfig:
    """Megatron's GPT dataset config from Megatron-LM's parsed flags."""
    blend, blend_per_split = get_blend_and_blend_per_split(args)
    return GPTDatasetConfig(
        random_seed=args.seed,
        sequence_length=args.seq_length,
        blend=blend,
        blend_per_split=blend_per_split,
        split=args.split,
        multiple_validation_sets=args.multiple_validation_sets,
        full_validation=args.full_validation,
        num_dataset_builder_threads=args.num_dataset_builder_threads,
        path_to_cache=args.data_cache_path,
        mmap_bin_files=args.mmap_bin_files,
        tokenizer=build_tokenizer(args),
        reset_position_ids=args.reset_position_ids,
        reset_attention_mask=args.reset_attention_mask,
        eod_mask_loss=args.eod_mask_loss,
        create_attention_mask=args.create_attention_mask_in_dataloader,
        object_storage_cache_path=args.object_storage_cache_path,
        mid_level_dataset_surplus=args.mid_level_dataset_surplus,
        allow_ambiguous_pad_tokens=args.allow_ambiguous_pad_tokens,
        fast_cache_load=args.dataloader_fast_cache_load,
        defer_npy_index_mmap=args.dataloader_defer_npy_index_mmap,
        context_parallel_size=args.context_parallel_size,
        data_parallel_size=args.data_parallel_size,
        sequence_parallel_size=args.tensor_model_parallel_size * args.sequence_parallel,
        inter_document_masking=args.dataloader_inter_document_masking,
    )


def built_on_rank(vp_stage: int | None = None) -> bool:
    """Whether this rank reads samples: TP rank 0 (the others get them by broadcast) of the
    first and last stage, or of every stage when micro-batches carry ``cu_seqlens``."""
    if mpu.get_tensor_model_parallel_rank() != 0:
        return False
    return get_args().dataloader_inter_document_masking or is_first_or_last_pipeline_stage(
        vp_stage)


_LOG: list = []  # the log installed


def _install_log(args) -> None:
    """WLB's log beside megatron's for stock Megatron: its micro-batches priced by the run's
    cost model (``--wlb-cost-model``, else the model's FLOPs), as WLB's plans are."""
    from wlb.host.build import make_cost_model
    from wlb.megatron import wlb_log
    from wlb.megatron.arguments import moe_cost_args, wlb_run_config

    cfg = wlb_run_config(args)
    cost = make_cost_model(cfg.model, cfg.wlb, cfg.layout(torch.distributed.get_world_size()),
                           args.padded_vocab_size, **moe_cost_args(args))
    wlb_log.say_notes(cfg)
    wlb_log.install(None, cost)


def datasets_provider(num_samples, vp_stage: int | None = None):
    """Train/valid/test datasets (``pretrain()``'s ``train_valid_test_dataset_provider``)."""
    args = get_args()
    if not _LOG:  # (VPP asks once per model chunk)
        _LOG.append(True)
        _install_log(args)
    cls = MockGPTDataset if args.mock_data else GPTDataset
    print_rank_0(f"> building stock Megatron's {cls.__name__} train/valid/test datasets ...")
    return BlendedMegatronDatasetBuilder(
        cls, num_samples, lambda: built_on_rank(vp_stage), dataset_config(args)).build()


datasets_provider.is_distributed = True  # called on every rank; built_on_rank says who reads


def get_batch(data_iterator, vp_stage: int | None = None) -> dict:
    """This rank's part of the next micro-batch: {key: tensor or None} over :data:`BATCH_KEYS`.

    Shapes: [mbs, s] (tokens, labels, loss_mask, position_ids; with CP, s / CP of them), the
    mask [mbs, 1, s, s]; with ``cu_seqlens`` the samples are flattened to [1, mbs * s] and
    ``cu_seqlens`` is [1, docs + 1] over that stream.
    """
    args = get_args()
    has_cu_seqlens = args.dataloader_inter_document_masking
    if not has_cu_seqlens and not is_first_or_last_pipeline_stage(vp_stage):
        return dict.fromkeys(BATCH_KEYS)
    tp_rank = mpu.get_tensor_model_parallel_rank()
    batch = {}
    if tp_rank == 0:
        sample = next(data_iterator)
        batch = {k: sample.get(k) for k in BATCH_KEYS}
    batch = get_batch_on_this_tp_rank(
        batch, has_cu_seqlens=has_cu_seqlens, is_hybrid_cp=False,
        create_attention_mask_in_dataloader=args.create_attention_mask_in_dataloader,
        broadcast_src_rank=mpu.get_tensor_model_parallel_src_rank(),
        broadcast_group=mpu.get_tensor_model_parallel_group(),
        cp_size=args.context_parallel_size, tp_rank=tp_rank,
        micro_batch_size=args.micro_batch_size, seq_length=args.seq_length,
        mtp_on_this_rank=False,
        pipeline_model_parallel_size=args.pipeline_model_parallel_size,
        is_pipeline_first_stage=mpu.is_pipeline_first_stage(),
        is_pipeline_last_stage=mpu.is_pipeline_last_stage())
    batch = flatten_batch_for_packed_sequences(batch)
    if not is_first_or_last_pipeline_stage(vp_stage):
        # a middle stage needs only the document boundaries
        return {k: batch.get(k) if k in ("cu_seqlens", "max_seqlen") else None
                for k in BATCH_KEYS}
    batch = get_batch_on_this_cp_rank(
        batch, is_hybrid_cp=False, cp_group=mpu.get_context_parallel_group(),
        use_per_sequence_balancing=has_cu_seqlens)
    return {k: batch.get(k) for k in BATCH_KEYS}


def packed_seq_params(batch: dict) -> PackedSeqParams | None:
    """megatron's THD parameters for a micro-batch with ``cu_seqlens`` (else None).

    Example: two samples of 4 tokens, documents (3, 1) and (4,): ``cu_seqlens`` [[0, 3, 4, 8]],
    ``max_seqlen`` 4.
    """
    cu = batch.get("cu_seqlens")
    if cu is None:
        return None
    cu = cu.reshape(-1).to(torch.int32)  # [1, docs + 1] -> [docs + 1]
    max_len = int(batch["max_seqlen"].max())
    return PackedSeqParams(qkv_format="thd", cu_seqlens_q=cu, cu_seqlens_kv=cu,
                           max_seqlen_q=max_len, max_seqlen_kv=max_len)


def on_wlb_attention(args) -> bool:
    """Whether the stock arm's CP runs through WLB's attention: stock Megatron at CP > 1 on
    megatron's local layers (their attention has no CP)."""
    return (getattr(args, "wlb_stock", False) and args.transformer_impl == "local"
            and args.context_parallel_size > 1)


def wlb_cp_params(batch: dict, args, cp_rank: int) -> tuple[dict, WLBPackedSeqParams]:
    """:func:`get_batch`'s CP-sliced micro-batch as WLB's attention takes it: one THD sequence
    [1, t_local] and its :class:`WLBPackedSeqParams` (megatron's own CP slicing kept).

    Megatron cuts each sample (causal), or with ``cu_seqlens`` the flattened micro-batch, into
    2 x CP chunks; rank r holds chunks r and 2CP-1-r. That is WLB's ``per_seq`` over the
    micro-batch's documents, and for samples (documents of ``seq_length``) WLB's ``per_doc``, which
    stores every sample's front chunk before the back chunks: the tokens are reordered to it.

    Worked example (causal, CP 2, rank 0, 2 samples of 8 tokens, chunks of 2): megatron's rows
    [[a0 a1 a6 a7], [b0 b1 b6 b7]] -> [a0 a1 b0 b1 a6 a7 b6 b7]; positions [0 1 0 1 6 7 6 7].
    """
    cp = args.context_parallel_size
    out = dict(batch)
    if batch.get("cu_seqlens") is not None:  # [1, t_local], documents over the whole stream
        cu = batch["cu_seqlens"].reshape(-1).cpu()
        seq_lens, strategy = tuple(int(x) for x in torch.diff(cu).tolist()), "per_seq"
    else:  # [b, s / CP]: each sample's front and back chunk
        b, s = args.micro_batch_size, args.seq_length
        seq_lens, strategy = (s,) * b, "per_doc"
        for k in ("tokens", "labels", "loss_mask"):
            if batch.get(k) is not None:  # [b, 2, c] -> [2, b, c] -> [1, 2bc]
                out[k] = batch[k].reshape(b, 2, -1).transpose(0, 1).reshape(1, -1)
    glob = shard_position_array(seq_lens, cp, cp_rank, strategy)  # [t_local], in the stream
    ends = np.cumsum(seq_lens)
    doc = np.searchsorted(ends, glob, side="right")
    positions = torch.from_numpy(glob - (ends - np.asarray(seq_lens))[doc])  # in its document
    dev = next((v.device for v in batch.values() if isinstance(v, torch.Tensor)),
               torch.device("cpu"))
    out["position_ids"] = positions.to(dev)[None]  # [1, t_local]
    out["attention_mask"] = None  # (causal, or documents from seq_lens)
    params = WLBPackedSeqParams(qkv_format="thd", seq_lens=seq_lens, cp_strategy=strategy,
                                positions=out["position_ids"][0])
    return out, params
