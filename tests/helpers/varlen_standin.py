"""CPU stand-ins for GPU varlen attention kernels, written from flash-attn's documented contract.

``flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
causal=True)`` (flash-attn >= 2.1) treats each (cu_q[i]:cu_q[i+1], cu_k[i]:cu_k[i+1]) pair as
one sequence and aligns the causal mask bottom-right: query i of a run of lq queries against lk
keys sees keys j <= i + lk - lq. The stand-in computes exactly that with one SDPA call per
sequence, so the adapter in ``wlb.cp.kernels`` (plan, gathers, gradients) is tested on CPU; the
real kernels are tested by the ``gpu`` tests.
"""

import torch
import torch.nn.functional as F


def _varlen(q, k, v, plan, scale, bottom_right: bool):
    cq, ck = plan.cu_q.tolist(), plan.cu_k.tolist()
    outs = []
    for i in range(len(cq) - 1):
        qs, ks, vs = q[cq[i]:cq[i + 1]], k[ck[i]:ck[i + 1]], v[ck[i]:ck[i + 1]]
        lq, lk = qs.shape[0], ks.shape[0]
        mask = torch.ones(lq, lk, dtype=torch.bool).tril(diagonal=lk - lq if bottom_right else 0)
        o = F.scaled_dot_product_attention(
            qs.transpose(0, 1), ks.transpose(0, 1), vs.transpose(0, 1), attn_mask=mask,
            scale=scale, enable_gqa=q.shape[1] != k.shape[1],
        )
        outs.append(o.transpose(0, 1))
    return torch.cat(outs)


def standin_varlen(q, k, v, plan, scale):
    """flash-attn >= 2.1 semantics (bottom-right causal)."""
    return _varlen(q, k, v, plan, scale, bottom_right=True)


def top_left_varlen(q, k, v, plan, scale):
    """flash-attn < 2.1 semantics (top-left causal): must be refused."""
    return _varlen(q, k, v, plan, scale, bottom_right=False)
