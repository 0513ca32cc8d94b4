"""The GPT model config, forward step and loss that Megatron-LM's ``pretrain()`` is given.

The shape of Megatron-LM 0.19's ``pretrain_gpt.py``, written for WLB. megatron 0.19 builds the
model from its ``GPTModelConfig`` (its GPT builder; a ``model_provider`` is not called then): the
layer spec is the one megatron picks from the flags (``--spec``, MoE's block spec, the
TransformerEngine or the local layer), with one change: its core attention becomes WLB's
(:class:`wlb.megatron.attention.WLBCoreAttention`) for WLB's packing (on TransformerEngine's
layers too: its linear and norm layers stay), and on the local layers wherever a run has THD
micro-batches or CP, which megatron's local attention does not take.

The loss is per token: the sum over the micro-batch's tokens and their count
(``--calculate-per-token-loss``, which ``wlb.megatron.arguments`` turns on), so micro-batches of
different lengths weigh by their tokens.
"""

from __future__ import annotations

from functools import partial

import torch
from megatron.core import mpu
from megatron.core.models.gpt import GPTModel
from megatron.core.rerun_state_machine import get_rerun_state_machine
from megatron.core.transformer.spec_utils import ModuleSpec
from megatron.core.transformer.torch_norm import WrappedTorchNorm
from megatron.core.transformer.transformer_block import (
    TransformerBlockSubmodules,
    get_num_layers_to_build,
)
from megatron.core.utils import get_attr_wrapped_model
from megatron.training import get_args, get_timers
from megatron.training.argument_utils import gpt_config_from_args
from megatron.training.models.gpt import default_layer_spec
from megatron.training.training import update_seqlen_stats_from_cu_seqlens

from wlb.megatron import stock_data, wlb_data
from wlb.megatron.arguments import wlb_run_config
from wlb.megatron.attention import WLBCoreAttention, WLBPackedSeqParams, thd_seq_lens
from wlb.megatron.combinations import needs_wlb_core_attention
from wlb.megatron.model import SPTorchNorm, swap_modules
from wlb.megatron.observe import FORWARD_STEPS


def wlb_layer_spec(config, vp_stage: int | None = None, base=None, attention=None,
                   sp_norms: bool = False):
    """``base`` (default: the spec megatron's GPT builder picks for ``config``: megatron's
    local layers, TransformerEngine's, MoE's) with WLB's substitutes: WLB's core attention built
    with ``attention`` (its RoPE base and percent, its kernel; no RoPE by default: megatron's
    own THD micro-batches come with it) in the spec's ``core_attention`` slot, whatever fills
    it; and, with ``sp_norms``, torch norms that work under sequence parallelism
    (``SPTorchNorm``) in place of megatron's local ones, which refuse it."""
    spec = base if base is not None else default_layer_spec(config, vp_stage)
    swaps, slots = {}, {}
    if attention is not None:
        slots["core_attention"] = ModuleSpec(module=WLBCoreAttention,
                                             params={"rotary_base": None, **attention})
    if sp_norms:
        swaps[WrappedTorchNorm] = SPTorchNorm
        if isinstance(spec, ModuleSpec):  # a layer's spec: the block's final norm too
            spec = TransformerBlockSubmodules(
                layer_specs=[spec] * get_num_layers_to_build(config, vp_stage=vp_stage),
                layer_norm=WrappedTorchNorm)
    return swap_modules(spec, swaps, slots)


def model_config(args):
    """Megatron-LM's GPT model config for ``args`` (``pretrain()`` builds the model from it with
    megatron's GPT builder), with :func:`wlb_layer_spec`'s substitutes: WLB's core attention
    where a run needs it (``combinations.needs_wlb_core_attention``: WLB's packing, any layers;
    THD or CP on megatron's local ones, which take neither), torch norms for sequence
    parallelism on megatron's local layers.

    WLB's packing: RoPE moves into WLB's attention (per document, at each token's position in
    its document, which CP sharding does not keep contiguous), and the pipeline stages exchange
    each micro-batch's shape (its length varies).
    """
    cfg = gpt_config_from_args(args)
    attention = {}
    if not args.wlb_stock or stock_data.on_wlb_attention(args):
        kernel = wlb_run_config(args).model.attention_backend
        attention = {"attention_backend": kernel, "rotary_percent": args.rotary_percent}
        if args.position_embedding_type == "rope":
            attention["rotary_base"] = args.rotary_base
            cfg.position_embedding_type = "none"
    if not args.wlb_stock:
        cfg.transformer.variable_seq_lengths = args.pipeline_model_parallel_size > 1
    sp_norms = args.transformer_impl == "local" and args.sequence_parallel
    wlb_attention = needs_wlb_core_attention(args)
    if wlb_attention or sp_norms:
        cfg.transformer_layer_spec = partial(
            wlb_layer_spec, base=cfg.transformer_layer_spec, sp_norms=sp_norms,
            attention=attention if wlb_attention else None)
    if ((args.dataloader_inter_document_masking or stock_data.on_wlb_attention(args))
            and args.pipeline_model_parallel_size > 1 and args.micro_batch_size > 1):
        # megatron flattens THD micro-batches to [1, mbs x s] tokens but sizes the pipeline's
        # P2P buffers [s, mbs, h]: the stages then exchange shapes first (megatron 0.19 fails)
        cfg.transformer.variable_seq_lengths = True
    return cfg


def loss_func(loss_mask: torch.Tensor, output_tensor: torch.Tensor):
    """(sum of the masked token losses, their count, report) of one micro-batch."""
    args = get_args()
    losses = output_tensor.view(-1).float()  # [b, s] or [1, t] -> [tokens]
    mask = loss_mask.view(-1).float()
    loss = torch.sum(losses * mask)
    num_tokens = mask.sum().to(torch.int)
    if args.check_for_nan_in_loss_and_grad:
        rerun = get_rerun_state_machine()
        for bad, what in ((torch.isnan, "NaN"), (torch.isinf, "Inf")):
            rerun.validate_result(result=loss, rejection_func=bad, tolerance=0.0, fatal=True,
                                  message=f"found {what} in local forward loss calculation")
    return loss, num_tokens, {"lm loss": torch.cat([loss.detach().view(1), num_tokens.view(1)])}


def _observed(model, index: int | None, start, tokens, positions, units=None) -> None:
    """A micro-batch's forward, recorded for the log (``wlb.megatron.observe``): its time in
    training; in evaluation its tokens' fingerprint, once (first stage, TP rank 0, chunk 0)."""
    vp = get_attr_wrapped_model(model, "vp_stage") or 0
    if model.training:
        FORWARD_STEPS.add(index, vp, start, FORWARD_STEPS.mark(), units)
    elif (vp == 0 and mpu.get_pipeline_model_parallel_rank() == 0
          and mpu.get_tensor_model_parallel_rank() == 0):
        FORWARD_STEPS.add_valid(tokens, positions)


def forward_step(data_iterator, model: GPTModel):
    """Stock Megatron's micro-batch through this rank's model chunk (``pretrain()``'s
    ``forward_step_func``)."""
    args = get_args()
    timers = get_timers()
    timers("batch-generator", log_level=2).start()
    batch = stock_data.get_batch(data_iterator, get_attr_wrapped_model(model, "vp_stage"))
    params = stock_data.packed_seq_params(batch)
    if params is not None:
        update_seqlen_stats_from_cu_seqlens(params.cu_seqlens_q)
    # the attention units: documents, or samples under causal attention over the whole sample
    units = thd_seq_lens(params) if params is not None else (
        (args.seq_length,) * args.micro_batch_size)
    if stock_data.on_wlb_attention(args):  # megatron's CP slicing, WLB's attention
        batch, params = stock_data.wlb_cp_params(batch, args, mpu.get_context_parallel_rank())
    timers("batch-generator").stop()
    start = FORWARD_STEPS.mark()
    output = model(batch["tokens"], batch["position_ids"], batch["attention_mask"],
                   labels=batch["labels"], loss_mask=batch["loss_mask"],
                   packed_seq_params=params)
    _observed(model, None, start, batch["tokens"], batch["position_ids"], units)
    return output, partial(loss_func, batch["loss_mask"])


def wlb_forward_step(data_iterator, model: GPTModel):
    """WLB's next micro-batch (``wlb.megatron.wlb_data``: one packed THD sequence, this CP
    rank's part of it) through this rank's model chunk."""
    timers = get_timers()
    timers("batch-generator", log_level=2).start()
    mb = next(data_iterator)
    dev = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() \
        else torch.device("cpu")
    tokens, labels, positions, loss_mask = (
        x.to(dev, non_blocking=True)[None] for x in (mb.tokens, mb.labels, mb.positions,
                                                     mb.loss_mask))  # [t] -> [1, t]
    params = WLBPackedSeqParams(qkv_format="thd", seq_lens=mb.seq_lens, cp_strategy=mb.strategy,
                                positions=positions[0])
    if mb.group is not None:  # elastic CP: this micro-batch's group, not the layout's CP group
        params.cp_group, params.cp_override = wlb_data.cp_group_of(mb), True
    real = mb.seq_lens[:mb.num_pieces]  # the documents' pieces, not the pad document
    update_seqlen_stats_from_cu_seqlens(
        torch.tensor([0, *real], dtype=torch.int32, device=dev).cumsum(0, dtype=torch.int32))
    timers("batch-generator").stop()
    start = FORWARD_STEPS.mark()
    output = model(tokens, positions, None, labels=labels, packed_seq_params=params)
    _observed(model, mb.index, start, mb.tokens, mb.positions)
    return output, partial(loss_func, loss_mask)
