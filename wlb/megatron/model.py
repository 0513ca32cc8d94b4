"""GPTModel chunks with our attention, a layout-independent init, megatron DDP and optimizer."""

from __future__ import annotations

import zlib
from dataclasses import fields, is_dataclass

import torch
from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig
from megatron.core.models.gpt import GPTModel
from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec
from megatron.core.transformer.dot_product_attention import DotProductAttention
from megatron.core.transformer.spec_utils import ModuleSpec
from megatron.core.transformer.torch_norm import WrappedTorchNorm
from megatron.core.transformer.transformer_block import (
    TransformerBlockSubmodules,
    get_num_layers_to_build,
)

from wlb.megatron.attention import WLBCoreAttention
from wlb.megatron.groups import Groups


class SPTorchNorm:
    """torch LayerNorm/RMSNorm that also works under sequence parallelism.

    megatron's ``WrappedTorchNorm`` asserts ``not sequence_parallel`` (torch_norm.py:32). Under SP
    each TP rank normalises its own slice of the sequence, so the norm weights get partial
    gradients; marking them ``sequence_parallel`` makes ``finalize_model_grads`` all-reduce them
    over TP, exactly as for megatron's fused norms.
    """

    def __new__(cls, config, hidden_size: int, eps: float = 1e-5, **_unused):
        norm_cls = {"LayerNorm": torch.nn.LayerNorm, "RMSNorm": torch.nn.RMSNorm}.get(
            config.normalization
        )
        if norm_cls is None:
            raise ValueError(f"normalization={config.normalization!r}: LayerNorm or RMSNorm")
        # in the model's dtype, as megatron's Float16Module casts them (bf16: a checkpoint of
        # the plain bf16 optimizer maps only bf16 parameters to their keys)
        norm = norm_cls(hidden_size, eps=eps, dtype=config.params_dtype)
        for p in norm.parameters():
            p.sequence_parallel = bool(config.sequence_parallel)
        return norm


def swap_modules(spec, mapping: dict):
    """Recursively replace module classes in a ModuleSpec tree (returns a new tree)."""
    if isinstance(spec, ModuleSpec):
        if spec.module in mapping:
            new = mapping[spec.module]
            if isinstance(new, ModuleSpec):
                return new
            return ModuleSpec(module=new, params=spec.params)
        return ModuleSpec(module=spec.module, params=dict(spec.params),
                          submodules=swap_modules(spec.submodules, mapping), metainfo=spec.metainfo)
    if isinstance(spec, type) and spec in mapping:
        return mapping[spec]
    if isinstance(spec, (list, tuple)):  # a block's layer_specs
        return type(spec)(swap_modules(s, mapping) for s in spec)
    if is_dataclass(spec) and not isinstance(spec, type):
        return type(spec)(**{f.name: swap_modules(getattr(spec, f.name), mapping)
                             for f in fields(spec)})
    return spec


def layer_spec(rotary_base: float | None, attention_backend: str = "auto",
               rotary_percent: float = 1.0) -> ModuleSpec:
    """megatron's local GPT layer spec with WLB CP attention and SP-capable torch norms."""
    attn = ModuleSpec(module=WLBCoreAttention, params={"rotary_base": rotary_base,
                                                       "attention_backend": attention_backend,
                                                       "rotary_percent": rotary_percent})
    return swap_modules(get_gpt_layer_local_spec(), {DotProductAttention: attn,
                                              WrappedTorchNorm: SPTorchNorm})


def build_model_chunks(config, groups: Groups, *, vocab_size: int, max_seq_length: int,
                       rotary_base: float | None, tie_embeddings: bool,
                       attention_backend: str = "auto",
                       rotary_percent: float = 1.0) -> list[GPTModel]:
    """One GPTModel per virtual pipeline stage held by this rank."""
    spec = layer_spec(rotary_base, attention_backend, rotary_percent)
    vpp = groups.layout.vpp
    chunks = []
    for vp in range(vpp):
        vp_stage = vp if vpp > 1 else None  # megatron's convention: None without VPP
        n_local = get_num_layers_to_build(config, vp_stage=vp_stage, pp_rank=groups.pp_rank)
        block = TransformerBlockSubmodules(layer_specs=[spec] * n_local, layer_norm=SPTorchNorm)
        chunks.append(GPTModel(
            config=config,
            transformer_layer_spec=block,
            vocab_size=vocab_size,
            max_sequence_length=max_seq_length,
            pre_process=groups.is_first_stage(vp_stage),
            post_process=groups.is_last_stage(vp_stage),
            share_embeddings_and_output_weights=tie_embeddings,
            position_embedding_type="none",
            vp_stage=vp_stage,
        ))
    return chunks


def _canonical_name(chunk: GPTModel, name: str, tied: bool) -> str:
    """Parameter name in the 1-process model (global layer index, tied output = embedding)."""
    if name.startswith("decoder.layers."):
        local, rest = name[len("decoder.layers."):].split(".", 1)
        global_idx = chunk.decoder.layers[int(local)].layer_number - 1
        return f"decoder.layers.{global_idx}.{rest}"
    if tied and name == "output_layer.weight":
        return "embedding.word_embeddings.weight"
    return name


def _tp_slice(full: torch.Tensor, dim: int, stride: int, rank: int, size: int) -> torch.Tensor:
    """TP rank's part of a full tensor. With ``stride`` s the dimension holds s stacked blocks
    (SwiGLU fc1: [gate; up], stride 2) and the rank takes its chunk of each block.

    Example: rows [g0 g1 g2 g3 | u0 u1 u2 u3], stride 2, size 2 -> rank 1 gets [g2 g3 u2 u3].
    """
    blocks = full.chunk(stride, dim=dim)
    return torch.cat([b.chunk(size, dim=dim)[rank] for b in blocks], dim=dim)


@torch.no_grad()
def init_layout_independent(chunks: list[GPTModel], *, seed: int, std: float, num_layers: int,
                            tp_rank: int, tp_size: int, tied: bool) -> None:
    """Initialise every parameter as its slice of the 1-process model's tensor.

    Each full tensor is drawn from a generator seeded by (seed, canonical name), then this TP
    rank's slice along ``partition_dim`` is kept, so TP/PP/VPP/CP/DP layouts start from the same
    weights. Matrices ~ N(0, std) (output projections std / sqrt(2 * num_layers), as megatron's
    scaled init), norm weights 1, biases 0.
    """
    for chunk in chunks:
        for name, p in chunk.named_parameters():
            canon = _canonical_name(chunk, name, tied)
            if name.endswith("bias"):
                p.zero_()
                continue
            if p.dim() == 1:
                p.fill_(1.0)
                continue
            shape = list(p.shape)
            part = getattr(p, "partition_dim", -1) if getattr(p, "tensor_model_parallel", False) \
                else -1
            if part >= 0:
                shape[part] *= tp_size
            s = std / (2 * num_layers) ** 0.5 if canon.endswith(
                ("linear_proj.weight", "linear_fc2.weight")) else std
            gen = torch.Generator().manual_seed(zlib.crc32(f"{seed}:{canon}".encode()))
            full = torch.randn(shape, generator=gen, dtype=torch.float32) * s
            if part >= 0:
                full = _tp_slice(full, part, getattr(p, "partition_stride", 1), tp_rank, tp_size)
            p.copy_(full.to(p.dtype))


def wrap_ddp(config, chunks: list[GPTModel], *, use_distributed_optimizer: bool,
             overlap_grad_reduce: bool = False) -> list[DistributedDataParallel]:
    ddp_config = DistributedDataParallelConfig(
        grad_reduce_in_fp32=True,
        overlap_grad_reduce=overlap_grad_reduce,
        use_distributed_optimizer=use_distributed_optimizer,
    )
    return [
        DistributedDataParallel(
            config=config, ddp_config=ddp_config, module=chunk,
            # as Megatron-LM: only the first chunk buckets (the others overlap with its compute)
            disable_bucketing=i > 0,
        )
        for i, chunk in enumerate(chunks)
    ]
