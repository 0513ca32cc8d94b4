"""Our CP attention in megatron-core's ``core_attention`` ModuleSpec slot.

megatron-core's local ``DotProductAttention`` supports neither context parallelism nor packed
(THD) sequences (``dot_product_attention.py:57/153``); :class:`WLBCoreAttention` has the same
constructor and ``forward`` signature and does both, through :func:`wlb.cp.cp_attention`.

The per-micro-batch facts it needs (document lengths of the unsharded micro-batch, the CP sharding
strategy chosen for it, the document-relative positions of this rank's tokens) travel in
:class:`WLBPackedSeqParams`, which the model hands unchanged to every layer. RoPE is applied here,
per document, so it is correct under any sharding (the model is built with
``position_embedding_type="none"``).

Megatron's own THD micro-batches (a plain ``PackedSeqParams`` with ``cu_seqlens``, from
``--dataloader-inter-document-masking``) are taken too, as one unsharded per-seq micro-batch
whose RoPE megatron has already applied per document: that is stock Megatron's document-masked
attention where its local attention has none (on the CPU).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from megatron.core.packed_seq_params import PackedSeqParams
from megatron.core.transformer.module import MegatronModule

from wlb.cp.attention import cp_attention


@dataclass
class WLBPackedSeqParams(PackedSeqParams):
    """``PackedSeqParams`` (``qkv_format="thd"``) plus what CP attention needs.

    Attributes:
        seq_lens: the micro-batch's attention units before CP sharding (its pieces, then the
            pad document): the ``doc_lens`` of the CP attention.
        cp_strategy: "per_seq", "per_doc" or "mixed" for this micro-batch.
        positions: [t_local] position of each local token inside its document (RoPE).
        cp_group: with ``cp_override``, the group this micro-batch is sharded over instead of
            the layout's CP group (elastic CP; None: one rank, no all-gather).
        cp_override: use ``cp_group``.
    """

    seq_lens: tuple[int, ...] = ()
    cp_strategy: str = "per_doc"
    positions: torch.Tensor | None = None
    cp_group: object = None
    cp_override: bool = False


def thd_seq_lens(params: PackedSeqParams) -> tuple[int, ...]:
    """Document lengths of a megatron THD micro-batch (``cu_seqlens_q_padded`` if set, as
    megatron's attention reads it).

    Example: cu_seqlens [0, 3, 7, 8] -> (3, 4, 1).
    """
    cu = params.cu_seqlens_q_padded if params.cu_seqlens_q_padded is not None \
        else params.cu_seqlens_q
    if cu is None:
        raise ValueError("a THD PackedSeqParams without cu_seqlens_q")
    return tuple(int(x) for x in torch.diff(cu.reshape(-1).cpu()).tolist())


def rope_tables(positions: torch.Tensor, dim: int, base: float, dtype) -> tuple:
    """cos/sin tables [t, 1, dim] for non-interleaved RoPE (megatron's ``rotate_half`` form)."""
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32,
                                            device=positions.device) / dim))
    ang = positions.to(torch.float32)[:, None] * inv_freq[None, :]  # [t, dim/2]
    emb = torch.cat([ang, ang], dim=-1)[:, None, :]  # [t, 1, dim]
    return emb.cos().to(dtype), emb.sin().to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [t, h, d] rotated by position: x*cos + rotate_half(x)*sin."""
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


def rotate(x: torch.Tensor, positions: torch.Tensor, base: float, percent: float = 1.0
           ) -> torch.Tensor:
    """x [t, h, d] with RoPE on its first ``int(d x percent)`` channels (Megatron's
    ``--rotary-percent``); the other channels pass through unchanged."""
    rot = int(x.shape[-1] * percent)
    cos, sin = rope_tables(positions, rot, base, x.dtype)
    return torch.cat([apply_rope(x[..., :rot], cos, sin), x[..., rot:]], dim=-1)


class WLBCoreAttention(MegatronModule):
    """Drop-in ``core_attention``: causal, document-masked, context-parallel attention.

    Args mirror megatron's ``DotProductAttention``; ``pg_collection.cp`` is the CP group.
    ``rotary_base`` (set through the ModuleSpec ``params``) turns on per-document RoPE;
    ``attention_backend`` picks the kernel (:mod:`wlb.cp.kernels`; ``cp_attention`` resolves it).
    """

    def __init__(
        self,
        config,
        layer_number: int,
        attn_mask_type,
        attention_type: str,
        attention_dropout: float | None = None,
        softmax_scale: float | None = None,
        cp_comm_type: str | None = None,
        pg_collection=None,
        rotary_base: float | None = None,
        attention_backend: str = "auto",
        rotary_percent: float = 1.0,
    ) -> None:
        super().__init__(config=config)
        dropout = config.attention_dropout if attention_dropout is None else attention_dropout
        if dropout:
            raise ValueError(
                f"attention_dropout={dropout}: WLB CP attention has no dropout; set "
                "--attention-dropout 0"
            )
        if attention_type != "self":
            raise ValueError(f"attention_type={attention_type!r}: only self-attention")
        self.layer_number = layer_number
        self.softmax_scale = softmax_scale
        self.cp_group = getattr(pg_collection, "cp", None) if pg_collection is not None else None
        self.rope_base = rotary_base
        self.rotary_percent = rotary_percent
        self.attention_backend = attention_backend

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attention_mask=None,
        attn_mask_type=None,
        attention_bias=None,
        packed_seq_params: WLBPackedSeqParams | None = None,
    ) -> torch.Tensor:
        """query [t, heads_local, dim], key/value [t, kv_heads_local, dim] -> [t, heads*dim]."""
        p = packed_seq_params
        if attention_bias is not None:
            raise ValueError("attention_bias is not supported by WLB CP attention")
        if not isinstance(p, WLBPackedSeqParams):
            if p is None or p.qkv_format != "thd":
                raise TypeError(
                    "WLBCoreAttention needs packed THD micro-batches (WLBPackedSeqParams from "
                    "wlb.data, or megatron's PackedSeqParams with cu_seqlens); got "
                    f"{type(p).__name__}"
                    + (f" with qkv_format={p.qkv_format!r}" if p is not None else ""))
            if self.rope_base:
                raise ValueError("megatron's THD micro-batches carry no per-token positions: "
                                 "build the model with megatron's RoPE, rotary_base=None here")
            if self.cp_group is not None and torch.distributed.get_world_size(self.cp_group) > 1:
                raise ValueError("megatron's THD micro-batches sharded over CP ranks are not "
                                 "taken yet: WLBPackedSeqParams carry the CP layout")
            out = cp_attention(query, key, value, thd_seq_lens(p), None, "per_seq",
                               self.softmax_scale, self.attention_backend)
            return out.reshape(out.shape[0], -1)  # [t, h, d] -> [t, h*d]
        if self.rope_base:
            query, key = (rotate(x, p.positions, self.rope_base, self.rotary_percent)
                          for x in (query, key))
        cp_group = p.cp_group if p.cp_override else self.cp_group
        if cp_group is not None and torch.distributed.get_world_size(cp_group) == 1:
            cp_group = None
        out = cp_attention(
            query, key, value, p.seq_lens, cp_group, p.cp_strategy, self.softmax_scale,
            self.attention_backend,
        )
        return out.reshape(out.shape[0], -1)  # [t, h, d] -> [t, h*d]
