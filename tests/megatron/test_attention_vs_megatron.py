"""Our core attention against megatron-core's own ``DotProductAttention`` (code we did not write)
given the same block-diagonal causal document mask, forward and backward, with GQA."""

from __future__ import annotations

import warnings

import pytest
import torch

from tests.helpers.dist import run_distributed

pytestmark = pytest.mark.dist


def _compare(rank, world, doc_lens, backend="auto", megatron_thd=False):
    warnings.filterwarnings("ignore")
    if backend == "standin":  # the varlen-kernel path, with a CPU stand-in for the GPU kernel
        from tests.helpers.varlen_standin import standin_varlen
        from wlb.cp.kernels import register_kernel

        register_kernel("standin", standin_varlen)
    from megatron.core import parallel_state as ps
    from megatron.core.tensor_parallel import model_parallel_cuda_manual_seed
    from megatron.core.transformer import TransformerConfig
    from megatron.core.transformer.dot_product_attention import DotProductAttention
    from megatron.core.transformer.enums import AttnMaskType

    from wlb.megatron import cpu_loop
    from wlb.megatron.attention import WLBCoreAttention, WLBPackedSeqParams

    cpu_loop.apply()
    ps.initialize_model_parallel(1, 1)
    model_parallel_cuda_manual_seed(0)
    cfg = TransformerConfig(num_layers=1, hidden_size=64, num_attention_heads=4,
                            num_query_groups=2, attention_dropout=0.0, hidden_dropout=0.0,
                            masked_softmax_fusion=False, use_cpu_initialization=True)
    theirs = DotProductAttention(cfg, layer_number=1, attn_mask_type=AttnMaskType.arbitrary,
                                 attention_type="self")
    ours = WLBCoreAttention(cfg, layer_number=1, attn_mask_type=AttnMaskType.causal,
                            attention_type="self", attention_backend=backend)
    t = sum(doc_lens)
    torch.manual_seed(3)
    q = torch.randn(t, 4, 16, requires_grad=True)
    k = torch.randn(t, 2, 16, requires_grad=True)
    v = torch.randn(t, 2, 16, requires_grad=True)
    ids = torch.repeat_interleave(torch.arange(len(doc_lens)), torch.tensor(doc_lens))
    pos = torch.arange(t)
    allowed = (ids[:, None] == ids[None, :]) & (pos[None, :] <= pos[:, None])
    mask = (~allowed)[None, None]  # megatron: True = masked out, [b, 1, sq, sk]
    ref = theirs(q[:, None], k[:, None], v[:, None], mask)  # [s, b=1, h*d]
    params = WLBPackedSeqParams(qkv_format="thd", seq_lens=tuple(doc_lens),
                                cp_strategy="per_seq", positions=None)
    if megatron_thd:  # megatron's own THD parameters (--dataloader-inter-document-masking)
        from megatron.core.packed_seq_params import PackedSeqParams

        cu = torch.tensor([0, *doc_lens]).cumsum(0).to(torch.int32)
        params = PackedSeqParams(qkv_format="thd", cu_seqlens_q=cu, cu_seqlens_kv=cu,
                                 max_seqlen_q=max(doc_lens), max_seqlen_kv=max(doc_lens))
    out = ours(q, k, v, None, packed_seq_params=params)  # [t, h*d]
    torch.testing.assert_close(out, ref[:, 0], atol=2e-5, rtol=1e-4)
    g = torch.randn_like(out)
    grads_ref = torch.autograd.grad(ref[:, 0], (q, k, v), g)
    grads = torch.autograd.grad(out, (q, k, v), g)
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-4)
    ps.destroy_model_parallel()


@pytest.mark.parametrize("doc_lens", [[37], [5, 1, 20, 9, 64, 3], [200, 600, 31]])
def test_wlb_core_attention_matches_megatron_dot_product_attention(doc_lens):
    run_distributed(_compare, 1, doc_lens)


def test_megatrons_own_thd_micro_batches_are_document_masked_too():
    """(The stock arm's document masking on CPU: megatron's PackedSeqParams with cu_seqlens.)"""
    run_distributed(_compare, 1, [5, 1, 20, 9, 64, 3], "auto", True)


def test_varlen_kernel_path_matches_megatron_dot_product_attention():
    run_distributed(_compare, 1, [5, 1, 20, 9, 64, 3], "standin")


def test_rotary_percent_rotates_the_first_channels_only():
    import torch

    from wlb.megatron.attention import apply_rope, rope_tables, rotate

    x = torch.randn(6, 2, 8)
    pos = torch.tensor([0, 1, 2, 0, 1, 2])
    half = rotate(x, pos, 10000.0, 0.5)
    assert torch.equal(half[..., 4:], x[..., 4:])  # passed through
    cos, sin = rope_tables(pos, 4, 10000.0, x.dtype)
    assert torch.allclose(half[..., :4], apply_rope(x[..., :4], cos, sin))
    assert not torch.allclose(half[..., :4], x[..., :4])
    full = rotate(x, pos, 10000.0)
    cos, sin = rope_tables(pos, 8, 10000.0, x.dtype)
    assert torch.equal(full, apply_rope(x, cos, sin))
    # position 0 is not rotated; the base changes the rotation elsewhere
    assert torch.allclose(full[0], x[0])
    assert not torch.allclose(rotate(x, pos, 500000.0), full)
