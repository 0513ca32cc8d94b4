"""All-gather-KV context-parallel attention with document masks (Llama 3 style, paper §3.2).

Forward: every rank all-gathers K and V of the CP group (one collective for both), scatters the
gathered rows back to global token order, and computes causal attention of its local queries
against their own documents' keys only. Backward: dQ is local; dK/dV are accumulated in global
order, **re-ordered into each rank's shard layout** and reduce-scattered, so rank r receives the
gradient of exactly the K/V rows it holds (the official artifact appears to skip this re-order).

The compute backend here is pure torch (SDPA per query segment, bottom-right causal alignment via
an explicit mask); it runs on CPU and GPU. Communication is bound to the group passed in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.distributed as dist
import torch.nn.functional as F

from wlb.cp.shard import Segment, rank_segments, shard_positions

# torch >= 2.13 renamed the flat-buffer collectives; older torch (common on GPU images) lacks the
# new names.
_all_gather_flat = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
_reduce_scatter_flat = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor


@dataclass(frozen=True)
class CPLayout:
    """Everything one rank needs to run CP attention on one micro-batch.

    Attributes:
        total: tokens in the micro-batch (T).
        cp_size, cp_rank: group size and this rank.
        t_max: largest per-rank token count (collective buffers are padded to it).
        segments: this rank's query segments in storage order (front chunks, then back chunks).
        src_rows: rows of the gathered [cp * t_max] buffer that hold real tokens ...
        dst_pos: ... and the global positions they belong to (same length: T).
    """

    total: int
    cp_size: int
    cp_rank: int
    t_max: int
    segments: tuple[Segment, ...]
    src_rows: torch.Tensor
    dst_pos: torch.Tensor

    @property
    def local_tokens(self) -> int:
        return sum(s.length for s in self.segments)


@lru_cache(maxsize=128)
def build_layout(doc_lens: tuple[int, ...], cp_size: int, cp_rank: int, strategy: str) -> CPLayout:
    """Layout of ``doc_lens`` for ``cp_rank`` (cached: the same micro-batch serves every layer)."""
    src, dst, counts = [], [], []
    for r in range(cp_size):
        pos = shard_positions(doc_lens, cp_size, r, strategy)
        counts.append(len(pos))
        dst.extend(pos)
    front, back = rank_segments(doc_lens, cp_size, cp_rank, strategy)
    t_max = max(counts)
    for r, n in enumerate(counts):
        src.extend(range(r * t_max, r * t_max + n))
    return CPLayout(
        total=sum(doc_lens),
        cp_size=cp_size,
        cp_rank=cp_rank,
        t_max=t_max,
        segments=front + back,
        src_rows=torch.tensor(src, dtype=torch.long),
        dst_pos=torch.tensor(dst, dtype=torch.long),
    )


#: queries per block in :func:`_segment_attention`; bounds the score matrix at BLOCK x keys and
#: skips the fully-masked upper triangle of long segments.
QUERY_BLOCK = 1024


def _sdpa_block(qs, ks, vs, start: int, scale: float) -> torch.Tensor:
    """qs [s, h, d] at doc positions start..start+s-1 against ks/vs [start+s, hkv, d]."""
    n, kv = qs.shape[0], ks.shape[0]
    if start == 0:  # plain causal square: let SDPA pick its causal kernel (no mask tensor)
        mask, causal = None, True
    else:  # bottom-right causal: query i sits at doc position start+i and sees keys 0..start+i
        qi = torch.arange(n, device=qs.device)[:, None] + start
        mask, causal = torch.arange(kv, device=qs.device)[None, :] <= qi, False
    o = F.scaled_dot_product_attention(
        qs.transpose(0, 1),  # [h, s, d]
        ks.transpose(0, 1),  # [hkv, start+s, d]
        vs.transpose(0, 1),
        attn_mask=mask,
        is_causal=causal,
        scale=scale,
        enable_gqa=qs.shape[1] != ks.shape[1],
    )
    return o.transpose(0, 1)  # [s, h, d]


def _segment_attention(qs, ks, vs, start: int, scale: float) -> torch.Tensor:
    """One segment: qs [s, h, d] at doc positions start.., ks/vs [start+s, hkv, d] -> [s, h, d].

    Long segments are cut into query blocks of QUERY_BLOCK; block [b0, b1) only needs keys
    [0, start+b1), so a causal square costs about half the dense work and memory stays at
    QUERY_BLOCK x keys. Example: s=3000, start=0 -> blocks [0,1024) vs 1024 keys (causal),
    [1024,2048) vs 2048 keys, [2048,3000) vs 3000 keys (bottom-right masks).
    """
    n = qs.shape[0]
    if n <= QUERY_BLOCK:
        return _sdpa_block(qs, ks, vs, start, scale)
    outs = []
    for b0 in range(0, n, QUERY_BLOCK):
        b1 = min(b0 + QUERY_BLOCK, n)
        kv = start + b1
        outs.append(_sdpa_block(qs[b0:b1], ks[:kv], vs[:kv], start + b0, scale))
    return torch.cat(outs, dim=0)


def attend_segments(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, segments: Sequence[Segment], scale: float
) -> torch.Tensor:
    """Causal document-masked attention of local query segments against global-order K/V.

    Args:
        q: [t_local, heads, dim], rows in segment order.
        k, v: [T, kv_heads, dim] in global token order.
        segments: the query segments (see :class:`Segment`).
        scale: softmax scale.

    Returns:
        [t_local, heads, dim].
    """
    out = q.new_empty(q.shape)
    off = 0
    for s in segments:
        a, b = s.doc_start, s.doc_start + s.start + s.length
        out[off : off + s.length] = _segment_attention(
            q[off : off + s.length], k[a:b], v[a:b], s.start, scale
        )
        off += s.length
    return out


def attend_segments_backward(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    segments: Sequence[Segment],
    scale: float,
    grad_out: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """dQ [t_local, ...] and global-order partial dK, dV [T, ...] of :func:`attend_segments`.

    Recomputes each segment with its own leaf tensors, so a segment costs O(its keys) rather
    than the O(T) zero-filled gradient that autograd's slice backward would allocate per slice.
    """
    dq = torch.empty_like(q)
    dk = torch.zeros_like(k)
    dv = torch.zeros_like(v)
    off = 0
    for s in segments:
        a, b = s.doc_start, s.doc_start + s.start + s.length
        qs = q[off : off + s.length].detach().requires_grad_()
        ks = k[a:b].detach().requires_grad_()
        vs = v[a:b].detach().requires_grad_()
        with torch.enable_grad():
            o = _segment_attention(qs, ks, vs, s.start, scale)
        gq, gk, gv = torch.autograd.grad(o, (qs, ks, vs), grad_out[off : off + s.length])
        dq[off : off + s.length] = gq
        dk[a:b] += gk
        dv[a:b] += gv
        off += s.length
    return dq, dk, dv


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


class _CPAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, layout: CPLayout, group, scale: float):
        kv_dim = k.shape[-1]
        kv = _gather_kv(torch.cat([k, v], -1).contiguous(), layout, group)  # [T, hkv, 2d]
        k_g, v_g = kv[..., :kv_dim], kv[..., kv_dim:]
        out = attend_segments(q, k_g, v_g, layout.segments, scale)
        ctx.save_for_backward(q, k_g, v_g)
        ctx.layout, ctx.group, ctx.scale = layout, group, scale
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, k_g, v_g = ctx.saved_tensors
        dq, dk, dv = attend_segments_backward(
            q, k_g, v_g, ctx.layout.segments, ctx.scale, grad_out.contiguous()
        )
        dkv = _scatter_grad(torch.cat([dk, dv], -1).contiguous(), ctx.layout, ctx.group)
        kv_dim = k_g.shape[-1]
        return dq, dkv[..., :kv_dim], dkv[..., kv_dim:], None, None, None


def cp_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    doc_lens: Sequence[int],
    cp_group,
    strategy: str,
    softmax_scale: float | None = None,
) -> torch.Tensor:
    """Context-parallel causal attention with a document mask.

    Args:
        q: [t_local, heads, dim]; rows ordered as ``wlb.cp.shard_indices(doc_lens, cp, rank,
            strategy)``.
        k, v: [t_local, kv_heads, dim] (heads divisible by kv_heads: GQA).
        doc_lens: document lengths of the whole (unsharded) micro-batch.
        cp_group: the CP process group, or None for a single process.
        strategy: "per_seq" or "per_doc".
        softmax_scale: defaults to 1/sqrt(dim).

    Returns:
        [t_local, heads, dim], differentiable w.r.t. q, k and v.
    """
    if q.dim() != 3 or k.dim() != 3 or v.shape != k.shape:
        raise ValueError(f"expected q [t,h,d], k/v [t,hkv,d]; got {q.shape}, {k.shape}, {v.shape}")
    if q.shape[1] % k.shape[1]:
        raise ValueError(f"heads={q.shape[1]} not divisible by kv_heads={k.shape[1]}")
    cp = 1 if cp_group is None else dist.get_world_size(cp_group)
    rank = 0 if cp_group is None else dist.get_rank(cp_group)
    layout = build_layout(tuple(int(d) for d in doc_lens), cp, rank, strategy)
    if q.shape[0] != layout.local_tokens or k.shape[0] != layout.local_tokens:
        raise ValueError(
            f"rank {rank} holds {layout.local_tokens} tokens of doc_lens under {strategy}, "
            f"got q {q.shape[0]} / k {k.shape[0]} rows"
        )
    scale = softmax_scale if softmax_scale is not None else 1.0 / math.sqrt(q.shape[-1])
    return _CPAttention.apply(q, k, v, layout, cp_group, scale)


def reference_attention(q, k, v, doc_lens: Sequence[int], softmax_scale: float | None = None):
    """Single-process reference: one dense SDPA call with a block-diagonal causal mask.

    A different code path from :func:`attend_segments` (no segmentation), used by the tests.
    q: [T, h, d], k/v: [T, hkv, d] in global order.
    """
    ids = torch.repeat_interleave(
        torch.arange(len(doc_lens)), torch.tensor(list(doc_lens), dtype=torch.long)
    )
    pos = torch.arange(q.shape[0])
    mask = (ids[:, None] == ids[None, :]) & (pos[None, :] <= pos[:, None])
    scale = softmax_scale if softmax_scale is not None else 1.0 / math.sqrt(q.shape[-1])
    o = F.scaled_dot_product_attention(
        q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1), attn_mask=mask, scale=scale,
        enable_gqa=q.shape[1] != k.shape[1],
    )
    return o.transpose(0, 1)
