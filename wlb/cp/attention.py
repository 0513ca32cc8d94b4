"""All-gather-KV context-parallel attention with document masks (Llama 3 style, paper §3.2).

Forward: every rank all-gathers K and V of the CP group (one collective for both), scatters the
gathered rows back to global token order (:mod:`wlb.cp.layout`), and computes causal attention of
its local queries against their own documents' keys only, through the kernel it is given
(:mod:`wlb.cp.kernels`). Backward: dQ is local; dK/dV are accumulated in global order,
**re-ordered into each rank's shard layout** and reduce-scattered, so rank r receives the gradient
of exactly the K/V rows it holds (the official artifact appears to skip this re-order).
Communication is bound to the group passed in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.distributed as dist

from wlb.cp.kernels import attend, resolve_backend
from wlb.cp.layout import CPLayout, build_layout
from wlb.cp.strategy import Strategy

# torch >= 2.13 renamed the flat-buffer collectives; older torch (common on GPU images) lacks the
# new names.
_all_gather_flat = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
_reduce_scatter_flat = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor


def _gather_kv(kv_local: torch.Tensor, layout: CPLayout, group) -> torch.Tensor:
    """[t_local, ...] on every rank -> [T, ...] in global order."""
    if layout.cp_size == 1:
        out = kv_local.new_empty((layout.total, *kv_local.shape[1:]))
        out[layout.dst_pos] = kv_local
        return out
    pad = kv_local.new_zeros((layout.t_max, *kv_local.shape[1:]))
    pad[: kv_local.shape[0]] = kv_local
    buf = kv_local.new_empty((layout.cp_size * layout.t_max, *kv_local.shape[1:]))
    _all_gather_flat(buf, pad, group=group)
    out = kv_local.new_empty((layout.total, *kv_local.shape[1:]))
    out[layout.dst_pos] = buf[layout.src_rows]
    return out


def _scatter_grad(g_global: torch.Tensor, layout: CPLayout, group) -> torch.Tensor:
    """[T, ...] partial grads on every rank -> summed grads of this rank's rows, [t_local, ...]."""
    n_local = layout.local_tokens
    if layout.cp_size == 1:
        return g_global[layout.dst_pos][:n_local]
    send = g_global.new_zeros((layout.cp_size * layout.t_max, *g_global.shape[1:]))
    send[layout.src_rows] = g_global[layout.dst_pos]  # re-order into every rank's shard layout
    out = g_global.new_empty((layout.t_max, *g_global.shape[1:]))
    _reduce_scatter_flat(out, send, group=group)
    return out[:n_local]


class _GatherKV(torch.autograd.Function):
    """[t_local, hkv, 2d] -> [T, hkv, 2d] in global order; backward re-orders the gradient into
    every rank's shard layout and reduce-scatters it (one collective each way)."""

    @staticmethod
    def forward(ctx, kv_local, layout: CPLayout, group):
        ctx.layout, ctx.group = layout, group
        return _gather_kv(kv_local, layout, group)

    @staticmethod
    def backward(ctx, grad):
        return _scatter_grad(grad.contiguous(), ctx.layout, ctx.group), None, None


def cp_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    doc_lens: Sequence[int],
    cp_group,
    strategy: Strategy,
    softmax_scale: float | None = None,
    backend: str = "torch",
) -> torch.Tensor:
    """Context-parallel causal attention with a document mask.

    Args:
        q: [t_local, heads, dim]; rows ordered as ``wlb.cp.shard_indices(doc_lens, cp, rank,
            strategy)``.
        k, v: [t_local, kv_heads, dim] (heads divisible by kv_heads: GQA).
        doc_lens: document lengths of the whole (unsharded) micro-batch.
        cp_group: the CP process group, or None for a single process.
        strategy: the micro-batch's CP sharding (:data:`wlb.cp.strategy.Strategy`).
        softmax_scale: defaults to 1/sqrt(dim).
        backend: attention kernel, one of :data:`wlb.cp.kernels.BACKENDS` ("torch": SDPA per
            segment, runs anywhere; "auto": a FlashAttention-class varlen kernel on CUDA
            fp16/bf16 when one is installed).

    Returns:
        [t_local, heads, dim], differentiable w.r.t. q, k and v.
    """
    if q.dim() != 3 or k.dim() != 3 or v.shape != k.shape:
        raise ValueError(f"expected q [t,h,d], k/v [t,hkv,d]; got {q.shape}, {k.shape}, {v.shape}")
    if q.shape[1] % k.shape[1]:
        raise ValueError(f"heads={q.shape[1]} not divisible by kv_heads={k.shape[1]}")
    cp = 1 if cp_group is None else dist.get_world_size(cp_group)
    rank = 0 if cp_group is None else dist.get_rank(cp_group)
    layout = build_layout(tuple(int(d) for d in doc_lens), cp, rank, strategy, str(q.device))
    if q.shape[0] != layout.local_tokens or k.shape[0] != layout.local_tokens:
        raise ValueError(
            f"rank {rank} holds {layout.local_tokens} tokens of doc_lens under {strategy}, "
            f"got q {q.shape[0]} / k {k.shape[0]} rows"
        )
    scale = softmax_scale if softmax_scale is not None else 1.0 / math.sqrt(q.shape[-1])
    kernel = resolve_backend(backend, q)
    kv = _GatherKV.apply(torch.cat([k, v], -1).contiguous(), layout, cp_group)  # [T, hkv, 2d]
    return attend(kernel, q, kv, layout.segments, scale)
