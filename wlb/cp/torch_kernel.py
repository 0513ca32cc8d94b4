"""The ``torch`` attention kernel: SDPA per query segment, on CPU and GPU, any dtype.

One rank's attention work is a list of query segments (:class:`wlb.cp.shard.Segment`) against
K/V in global token order. Long segments run one SDPA call each, cut into query blocks; short ones
are batched into padded SDPA calls by key-length bucket (per-call overhead, not FLOPs, dominates
short documents). The backward recomputes each segment (:func:`attend_segments_backward`), so it
costs O(the segment's keys) rather than the O(T) zero-filled gradient of autograd's slicing.

This is the reference kernel the GPU kernels of :mod:`wlb.cp.kernels` are tested against, and
the one registered there under ``torch``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F

from wlb.cp.shard import Segment

#: the kernel's speed revision, recorded by tools/calibrate_cost_model.py: a cost model calibrated
#: on another revision misprices attention (1: SDPA on 3-D inputs, its unfused math path; 2:
#: 4-D inputs, the fused kernel, 3-6x faster on CPU). Bump it when a change moves the speed.
REVISION = 2

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
    # 4-D: SDPA's fused (flash) kernels take only [batch, heads, seq, dim]; 3-D inputs fall back
    # to the unfused math path, which materialises the score matrix (3-6x slower on CPU)
    o = F.scaled_dot_product_attention(
        qs.transpose(0, 1)[None],  # [1, h, s, d]
        ks.transpose(0, 1)[None],  # [1, hkv, start+s, d]
        vs.transpose(0, 1)[None],
        attn_mask=mask,
        is_causal=causal,
        scale=scale,
        enable_gqa=qs.shape[1] != ks.shape[1],
    )
    return o[0].transpose(0, 1)  # [1, h, s, d] -> [s, h, d]


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


class _SegmentAttention(torch.autograd.Function):
    """The ``torch`` kernel: SDPA per segment; backward recomputes (see attend_segments_backward).

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




def torch_kernel(q: torch.Tensor, kv: torch.Tensor, segments: Sequence[Segment],
                 scale: float) -> torch.Tensor:
    """Registry entry: local queries ``q`` [t_local, h, d] against the gathered K|V buffer ``kv``
    [T, hkv, 2d] (global order); differentiable w.r.t. both."""
    return _SegmentAttention.apply(q, kv, tuple(segments), scale)
