"""Megatron-LM flags that cannot combine with how ``pretrain_gpt_wlb.py`` runs them, and
where WLB's core attention takes megatron's place: checked before anything is built
(``wlb.megatron.arguments``; :func:`needs_wlb_core_attention` is read by ``wlb.megatron.gpt``).
"""

from __future__ import annotations

import importlib.util

from wlb.config import WLBConfig


def needs_wlb_core_attention(args) -> bool:
    """Whether megatron's core attention must give way to WLB's: WLB's packing (its CP
    strategies, on any layers), or on megatron's local layers THD micro-batches
    (``--dataloader-inter-document-masking``) or CP, which their attention does not take
    (TransformerEngine's takes both: stock Megatron keeps it)."""
    return not getattr(args, "wlb_stock", True) or (args.transformer_impl == "local" and (
        args.dataloader_inter_document_masking or args.context_parallel_size > 1))


def refusal(args, wlb: WLBConfig) -> str | None:
    """Why Megatron-LM's flags ``args`` cannot run with WLB's ``wlb`` in this entry (one line
    naming both), else None."""
    from megatron.core.transformer.enums import AttnBackend

    if args.transformer_impl == "transformer_engine" and importlib.util.find_spec(
            "transformer_engine") is None:
        return ("--transformer-impl transformer_engine (Megatron-LM's default): "
                "TransformerEngine is not installed (requirements-gpu.txt); without it give "
                "--transformer-impl local")
    if not wlb.is_baseline:
        if args.hybrid_context_parallel:
            return (f"--hybrid-context-parallel with --wlb-packing {wlb.packing}: megatron's "
                    "hybrid CP balances with its own scheduler (BalancedCPScheduler); WLB's "
                    "packing and CP sharding replace it: give one of the two")
        if args.micro_batch_size != 1:
            return (f"--micro-batch-size={args.micro_batch_size} with --wlb-packing "
                    f"{wlb.packing}: a WLB micro-batch is one packed (THD) sequence; set "
                    "--micro-batch-size 1 (--global-batch-size counts WLB micro-batches)")
        if args.attention_dropout:
            return (f"--attention-dropout={args.attention_dropout} with --wlb-packing "
                    f"{wlb.packing}: WLB's attention has no dropout; set --attention-dropout 0")
        for flag, on in (("--fp8-format", args.fp8), ("--fp4-format", args.fp4),
                         ("--tp-comm-overlap", args.tp_comm_overlap),
                         ("--enable-cuda-graph", args.enable_cuda_graph),
                         ("--cuda-graph-impl", args.cuda_graph_impl != "none")):
            if on:  # (each needs every micro-batch's shape fixed, or padded to 16 tokens)
                return (f"{flag} with --wlb-packing {wlb.packing}: WLB's micro-batches vary "
                        f"in length (padded to 2 x CP tokens only), which {flag} does not "
                        "take: not wired yet")
        if (args.data_path is None) == (not args.mock_data):
            return (f"--wlb-packing {wlb.packing} reads --data-path PREFIX or --mock-data "
                    "(WLB's mock documents): give exactly one")
        return None
    if wlb.elastic_cp:
        return ("--wlb-elastic-cp with --wlb-packing megatron: elastic CP regroups WLB's "
                "micro-batches; stock Megatron has none to regroup")
    if args.transformer_impl == "local" and args.context_parallel_size > 1:
        for flag in ("reset_attention_mask", "reset_position_ids"):
            if getattr(args, flag):
                return (f"--{flag.replace('_', '-')} with --context-parallel-size "
                        f"{args.context_parallel_size} on --transformer-impl local: stock CP "
                        "runs through WLB's attention, which masks documents from cu_seqlens; "
                        "use --dataloader-inter-document-masking")
    if needs_wlb_core_attention(args) and args.attention_backend == AttnBackend.local:
        why = ("--dataloader-inter-document-masking" if args.dataloader_inter_document_masking
               else f"--context-parallel-size {args.context_parallel_size}")
        return (f"--attention-backend local with {why}: megatron's local attention takes "
                "neither THD micro-batches nor CP (WLB's attention runs them with "
                "--transformer-impl local and another --attention-backend)")
    return None
