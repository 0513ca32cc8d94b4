"""All-gather-KV context-parallel attention with document masks (Llama 3 style, paper §3.2).

Forward: every rank all-gathers K and V of the CP group (one collective for both), scatters the
gathered rows back to global token order, and computes causal attention of its local queries
against their own documents' keys only. Backward: dQ is local; dK/dV are accumulated in global
order, **re-ordered into each rank's shard layout** and reduce-scattered, so rank r receives the
gradient of exactly the K/V rows it holds (the official artifact appears to skip this re-order).

The compute backend defined here is pure torch (SDPA per query segment, bottom-right causal
alignment via an explicit mask); it runs on CPU and GPU. GPU varlen kernels (PyTorch's
FlashAttention-2, flash-attn, TransformerEngine) plug in through :mod:`wlb.cp.kernels`.
Communication is bound to the group passed in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.distributed as dist
import torch.nn.functional as F

from wlb.cp.kernels import resolve_backend, varlen_attention
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
def build_layout(doc_lens: tuple[int, ...], cp_size: int, cp_rank: int, strategy: str,
                 device: str = "cpu") -> CPLayout:
    """Layout of ``doc_lens`` for ``cp_rank``, index tensors on ``device`` (cached: the same
    micro-batch serves every layer)."""
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
        src_rows=torch.tensor(src, dtype=torch.long, device=device),
        dst_pos=torch.tensor(dst, dtype=torch.long, device=device),
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


#: segments whose keys fit in this many rows are batched into padded SDPA calls (one per length
#: bucket) instead of one call each: per-call overhead, not FLOPs, dominates short documents.
SMALL_KV = 512
#: cap on padded score elements (segments x queries x keys) of one batched call
BATCH_ELEMS = 1 << 22


@dataclass(frozen=True)
class _Batch:
    """Padded gather plan for a group of short segments (see :func:`_plan`).

    q_idx [n, Lq] rows of q (padding -> 0), kv_idx [n, Lk] rows of k/v (padding -> 0),
    mask [n, 1, Lq, Lk] allowed (query, key) pairs, rows [r] / sel [r] the real query rows: rows
    into q, sel into the flattened [n * Lq] batch.
    """

    q_idx: torch.Tensor
    kv_idx: torch.Tensor
    mask: torch.Tensor
    rows: torch.Tensor
    sel: torch.Tensor


def _bucket(kv: int) -> int:
    return max(16, 1 << (kv - 1).bit_length())


def _make_batch(group: list[tuple[Segment, int]], device: str) -> _Batch:
    lq = max(s.length for s, _ in group)
    lk = max(s.start + s.length for s, _ in group)
    n = len(group)
    q_idx = torch.zeros(n, lq, dtype=torch.long)
    kv_idx = torch.zeros(n, lk, dtype=torch.long)
    mask = torch.zeros(n, 1, lq, lk, dtype=torch.bool)
    rows, sel = [], []
    i_q = torch.arange(lq)[:, None]
    j_k = torch.arange(lk)[None, :]
    for g, (s, off) in enumerate(group):
        kv = s.start + s.length
        q_idx[g, : s.length] = torch.arange(off, off + s.length)
        kv_idx[g, :kv] = torch.arange(s.doc_start, s.doc_start + kv)
        m = (j_k <= i_q + s.start) & (j_k < kv) & (i_q < s.length)
        m[s.length :, 0] = True  # padded query rows see one key: no all-masked (NaN) rows
        mask[g, 0] = m
        rows.append(torch.arange(off, off + s.length))
        sel.append(torch.arange(g * lq, g * lq + s.length))
    return _Batch(*(t.to(device) for t in (q_idx, kv_idx, mask, torch.cat(rows), torch.cat(sel))))


@lru_cache(maxsize=256)
def _plan(segments: tuple[Segment, ...], device: str = "cpu") -> tuple[tuple, tuple[_Batch, ...]]:
    """Split segments into (long ones, one call each) and batches of short ones (index tensors
    on ``device``).

    Short segments (keys <= SMALL_KV) are grouped by the power-of-two bucket of their key count,
    so padding at most doubles a call's work; a group is cut when it would exceed BATCH_ELEMS.
    """
    singles, buckets, off = [], {}, 0
    for s in segments:
        kv = s.start + s.length
        if kv <= SMALL_KV:
            buckets.setdefault(_bucket(kv), []).append((s, off))
        else:
            singles.append((s, off))
        off += s.length
    batches = []
    for size in sorted(buckets):
        group = []
        for item in buckets[size]:
            if group and (len(group) + 1) * size * size > BATCH_ELEMS:
                batches.append(_make_batch(group, device))
                group = []
            group.append(item)
        if group:
            batches.append(_make_batch(group, device))
    return tuple(singles), tuple(batches)


def _batch_attention(q, k, v, bt: _Batch, scale: float) -> torch.Tensor:
    """Real query rows [r, h, d] of one padded batched SDPA call."""
    qb = q[bt.q_idx].permute(0, 2, 1, 3)  # [n, Lq, h, d] -> [n, h, Lq, d]
    kb = k[bt.kv_idx].permute(0, 2, 1, 3)  # [n, Lk, hkv, d] -> [n, hkv, Lk, d]
    vb = v[bt.kv_idx].permute(0, 2, 1, 3)
    o = F.scaled_dot_product_attention(qb, kb, vb, attn_mask=bt.mask, scale=scale,
                                       enable_gqa=q.shape[1] != k.shape[1])
    o = o.permute(0, 2, 1, 3).reshape(-1, q.shape[1], q.shape[2])  # [n * Lq, h, d]
    return o[bt.sel]


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
    singles, batches = _plan(tuple(segments), str(q.device))
    for s, off in singles:
        a, b = s.doc_start, s.doc_start + s.start + s.length
        out[off : off + s.length] = _segment_attention(
            q[off : off + s.length], k[a:b], v[a:b], s.start, scale
        )
    for bt in batches:
        out[bt.rows] = _batch_attention(q, k, v, bt, scale)
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

    Recomputes each long segment with its own leaf tensors, so it costs O(its keys) rather than
    the O(T) zero-filled gradient autograd's slice backward would allocate per slice; each batch
    of short segments is recomputed once through its gathers.
    """
    dq = torch.zeros_like(q)
    dk = torch.zeros_like(k)
    dv = torch.zeros_like(v)
    singles, batches = _plan(tuple(segments), str(q.device))
    for s, off in singles:
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
    if batches:
        ql, kl, vl = (t.detach().requires_grad_() for t in (q, k, v))
        with torch.enable_grad():  # (backward of an autograd.Function runs with grad off)
            o = torch.cat([_batch_attention(ql, kl, vl, bt, scale) for bt in batches])
        rows = torch.cat([bt.rows for bt in batches])
        gq, gk, gv = torch.autograd.grad(o, (ql, kl, vl), grad_out[rows])
        dq += gq
        dk += gk
        dv += gv
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


class _SegmentAttention(torch.autograd.Function):
    """The ``torch`` backend: SDPA per segment; backward recomputes (see attend_segments_backward).

    Takes the gathered [T, hkv, 2d] K|V buffer whole so its gradient is one tensor.
    """

    @staticmethod
    def forward(ctx, q, kv, segments, scale: float):
        d = q.shape[-1]
        out = attend_segments(q, kv[..., :d], kv[..., d:], segments, scale)
        ctx.save_for_backward(q, kv)
        ctx.segments, ctx.scale = segments, scale
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, kv = ctx.saved_tensors
        d = q.shape[-1]
        dq, dk, dv = attend_segments_backward(
            q, kv[..., :d], kv[..., d:], ctx.segments, ctx.scale, grad_out.contiguous()
        )
        return dq, torch.cat([dk, dv], -1), None, None


def cp_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    doc_lens: Sequence[int],
    cp_group,
    strategy: str,
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
        strategy: "per_seq", "per_doc" or "mixed".
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
    if kernel == "torch":
        return _SegmentAttention.apply(q, kv, layout.segments, scale)
    d = k.shape[-1]
    return varlen_attention(kernel, q, kv[..., :d], kv[..., d:], layout.segments, scale)


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
