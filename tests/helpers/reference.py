"""Single-process reference attention the CP attention and its kernels are tested against."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F


def reference_attention(q, k, v, doc_lens: Sequence[int], softmax_scale: float | None = None):
    """One dense SDPA call with a block-diagonal causal mask.

    A different code path from ``wlb.cp.torch_kernel.attend_segments`` (no segmentation).
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
