"""The pure-torch attention kernel: query blocks and batched short segments, fwd and bwd."""

import pytest
import torch

import wlb.cp.torch_kernel as attn
from tests.helpers.reference import reference_attention


@pytest.mark.parametrize("start, length", [(0, 50), (7, 40), (33, 17)])
def test_query_blocks_match_dense_reference(monkeypatch, start, length):
    """Segments longer than QUERY_BLOCK are computed block by block (forward and backward)."""
    from wlb.cp.shard import Segment

    monkeypatch.setattr(attn, "QUERY_BLOCK", 8)
    torch.manual_seed(start)
    doc = start + length + 5
    q = torch.randn(doc, 4, 8, dtype=torch.float64, requires_grad=True)
    k = torch.randn(doc, 2, 8, dtype=torch.float64, requires_grad=True)
    v = torch.randn(doc, 2, 8, dtype=torch.float64, requires_grad=True)
    ref = reference_attention(q, k, v, [doc])[start : start + length]
    seg = [Segment(0, 0, start, length)]
    out = attn.attend_segments(q[start : start + length], k, v, seg, 8**-0.5)
    torch.testing.assert_close(out, ref)
    g = torch.randn_like(ref)
    dq, dk, dv = attn.attend_segments_backward(q[start : start + length].detach(), k.detach(),
                                               v.detach(), seg, 8**-0.5, g)
    rq, rk, rv = torch.autograd.grad(ref, (q, k, v), g)
    torch.testing.assert_close(dq, rq[start : start + length])
    torch.testing.assert_close(dk, rk)
    torch.testing.assert_close(dv, rv)


@pytest.mark.parametrize("strategy", ["per_seq", "per_doc"])
def test_batched_short_segments_equal_one_call_each(monkeypatch, strategy):
    """The padded batched path for short segments gives the per-segment results (fwd + bwd)."""
    from wlb.cp.shard import rank_segments

    torch.manual_seed(1)
    lens = [3, 17, 1, 40, 9, 130, 2, 64, 5]
    segs = [s for half in rank_segments(lens, 2, 1, strategy) for s in half]
    t_local = sum(s.length for s in segs)
    q = torch.randn(t_local, 4, 8, dtype=torch.float64)
    k = torch.randn(sum(lens), 2, 8, dtype=torch.float64)
    v = torch.randn(sum(lens), 2, 8, dtype=torch.float64)
    g = torch.randn(t_local, 4, 8, dtype=torch.float64)
    results = []
    for small, elems in ((0, 1 << 22), (512, 1 << 22), (512, 600)):  # none / all / many groups
        monkeypatch.setattr(attn, "SMALL_KV", small)
        monkeypatch.setattr(attn, "BATCH_ELEMS", elems)
        attn._plan.cache_clear()
        out = attn.attend_segments(q, k, v, segs, 8**-0.5)
        results.append((out, *attn.attend_segments_backward(q, k, v, segs, 8**-0.5, g)))
    attn._plan.cache_clear()
    assert len(attn._plan(tuple(segs))[1]) > 0  # default SMALL_KV restored: batches exist
    for other in results[1:]:
        for a, b in zip(results[0], other):
            torch.testing.assert_close(a, b)


def test_every_sdpa_call_is_4d_so_the_fused_kernel_can_take_it(monkeypatch):
    """SDPA's fused (flash) kernels take only 4-D inputs; 3-D ones run the unfused math path,
    3-6x slower on CPU. Long segments (one call each, causal and bottom-right) and batched
    short ones must all reach SDPA as [batch, heads, seq, dim]."""
    from wlb.cp.shard import Segment

    dims = []
    sdpa = attn.F.scaled_dot_product_attention

    def spy(q, k, v, **kw):
        dims.append((q.dim(), k.dim(), v.dim()))
        return sdpa(q, k, v, **kw)

    monkeypatch.setattr(attn.F, "scaled_dot_product_attention", spy)
    q = torch.randn(900 + 20, 2, 8)
    kv = torch.randn(900 + 20, 2, 8)
    segs = [Segment(0, 0, 0, 600), Segment(0, 0, 600, 300), Segment(1, 900, 0, 20)]
    attn.attend_segments(q, kv, kv, segs, 8**-0.5)
    assert len(dims) == 3 and set(dims) == {(4, 4, 4)}
