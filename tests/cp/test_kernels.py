"""Attention kernel selection and the varlen adapter (wlb.cp.kernels)."""

import pytest
import torch

from tests.helpers.reference import reference_attention
from tests.helpers.varlen_standin import standin_varlen, top_left_varlen
from wlb.cp import cp_attention, shard_indices
from wlb.cp.kernels import (
    AUTO_ORDER,
    KERNELS,
    check_alignment,
    register_kernel,
    resolve_backend,
    varlen_plan,
)
from wlb.cp.shard import rank_segments


@pytest.fixture
def standin():
    saved = dict(KERNELS)
    register_kernel("standin", standin_varlen)
    register_kernel("topleft", top_left_varlen)
    yield "standin"
    KERNELS.clear()
    KERNELS.update(saved)


def test_varlen_plan_worked_example():
    """doc_lens [6, 3], CP=2, per_doc, rank 0 (the example in the docstring)."""
    front, back = rank_segments([6, 3], 2, 0, "per_doc")
    plan = varlen_plan(front + back)
    assert plan.cu_q.tolist() == [0, 2, 3, 4, 5]
    assert plan.cu_k.tolist() == [0, 2, 3, 9, 12]
    assert plan.kv_idx.tolist() == [0, 1, 6, 0, 1, 2, 3, 4, 5, 6, 7, 8]
    assert (plan.max_q, plan.max_k) == (2, 6)
    assert plan.cu_q.dtype == plan.cu_k.dtype == torch.int32


def test_varlen_plan_of_no_segments_is_empty():
    plan = varlen_plan(())
    assert plan.cu_q.tolist() == [0] and plan.max_q == 0 and plan.kv_idx.numel() == 0


@pytest.mark.parametrize("strategy", ["per_seq", "per_doc", "mixed"])
def test_standin_backend_matches_reference_single_process(standin, strategy):
    lens = [1, 5, 300, 2, 9]
    T = sum(lens)
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(T, h, 8, generator=g, dtype=torch.float64) for h in (4, 2, 2))
    idx = shard_indices(lens, 1, 0, strategy)
    leaves = [x[idx].clone().requires_grad_() for x in (q, k, v)]
    out = cp_attention(*leaves, lens, None, strategy, backend=standin)
    refs = [x.clone().requires_grad_() for x in (q, k, v)]
    ref = reference_attention(*refs, lens)
    torch.testing.assert_close(out, ref.detach()[idx])
    go = torch.randn(T, 4, 8, generator=g, dtype=torch.float64)
    out.backward(go[idx])
    ref.backward(go)
    for a, b in zip(leaves, refs):
        torch.testing.assert_close(a.grad, b.grad[idx])


def test_top_left_kernel_is_refused(standin):
    with pytest.raises(RuntimeError, match="top-left"):
        check_alignment("topleft", 4, 2, 8, "cpu", torch.float32)
    check_alignment("standin", 4, 2, 8, "cpu", torch.float32)  # the right one passes


def test_auto_and_torch_resolve_to_torch_on_cpu():
    q = torch.zeros(3, 2, 4)
    assert resolve_backend("auto", q) == "torch"
    assert resolve_backend("torch", q) == "torch"
    assert resolve_backend("auto", q.bfloat16()) == "torch"
    assert set(AUTO_ORDER) <= set(KERNELS)


@pytest.mark.parametrize("name", ["varlen", "flash", "te"])
def test_gpu_kernels_refuse_cpu_tensors_with_a_clear_error(name):
    with pytest.raises(RuntimeError, match=f"--attention-backend {name} needs"):
        resolve_backend(name, torch.zeros(3, 2, 4))


def test_unknown_backend_named():
    with pytest.raises(ValueError, match="'cudnn'"):
        resolve_backend("cudnn", torch.zeros(3, 2, 4))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("name", ["varlen", "flash", "te"])
@pytest.mark.parametrize("strategy", ["per_seq", "per_doc", "mixed"])
def test_gpu_kernel_matches_torch_backend(name, strategy):
    """Real kernels on CUDA bf16 against the fp32 torch backend, on each rank's segments of a
    CP=2 shard (queries fewer than keys: the bottom-right alignment matters)."""
    from wlb.cp.kernels import varlen_attention
    from wlb.cp.torch_kernel import attend_segments

    try:
        resolve_backend(name, torch.zeros(1, 1, 8, device="cuda", dtype=torch.bfloat16))
    except RuntimeError as e:
        pytest.skip(str(e))
    lens = [1, 7, 1000, 3, 300, 64, 2 * 2 * 128 + 9]
    T = sum(lens)
    g = torch.Generator().manual_seed(5)
    k, v = (torch.randn(T, 2, 64, generator=g) for _ in range(2))
    for rank in range(2):
        segs = [s for half in rank_segments(lens, 2, rank, strategy) for s in half]
        t = sum(s.length for s in segs)
        q, go = torch.randn(t, 8, 64, generator=g), torch.randn(t, 8, 64, generator=g)
        got, want = [], []
        for dtype, out_list in ((torch.bfloat16, got), (torch.float32, want)):
            leaves = [x.to("cuda", dtype).requires_grad_() for x in (q, k, v)]
            if dtype == torch.float32:
                out = attend_segments(*leaves, segs, 64**-0.5)
            else:
                out = varlen_attention(name, *leaves, segs, 64**-0.5)
            out.backward(go.to("cuda", dtype))
            out_list += [out.float()] + [x.grad.float() for x in leaves]
        for what, a, b in zip(("out", "dq", "dk", "dv"), got, want):
            torch.testing.assert_close(a, b, atol=5e-2, rtol=5e-2,
                                       msg=f"{name} {strategy} rank {rank} {what}")


def _fake_varlen(seen, new_api: bool):
    """A varlen_attn with the new (window_size, enable_gqa, scale) or the old (is_causal)
    signature, computing with the stand-in, recording the keywords it was given."""
    from wlb.cp.kernels import VarlenPlan

    def run(q, k, v, cu_q, cu_k, max_q, max_k, kw):
        seen.append(kw)
        causal = kw.get("window_size") == (-1, 0) or kw.get("is_causal") is True
        assert causal, kw
        plan = VarlenPlan(torch.arange(k.shape[0]), cu_q, cu_k, max_q, max_k)
        return standin_varlen(q, k, v, plan, kw.get("scale", q.shape[-1] ** -0.5))

    if new_api:
        def varlen_attn(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, return_aux=None,
                        scale=None, window_size=(-1, -1), enable_gqa=False):
            assert enable_gqa or query.shape[1] == key.shape[1]
            return run(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k,
                       {"scale": scale, "window_size": window_size, "enable_gqa": enable_gqa})
    else:
        def varlen_attn(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, is_causal=False,
                        return_aux=None):
            assert query.shape[1] == key.shape[1]  # no GQA in the old API
            return run(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k,
                       {"is_causal": is_causal})
    return varlen_attn


@pytest.mark.parametrize("new_api", [True, False])
def test_torch_varlen_adapter_follows_the_installed_signature(monkeypatch, new_api):
    """PyTorch's varlen_attn changed keywords across releases (GPU images lag behind): the
    adapter passes causal/GQA/scale in whichever form the installed one takes."""
    import torch.nn.attention.varlen as tv

    from wlb.cp.kernels import _torch_varlen

    seen = []
    monkeypatch.setattr(tv, "varlen_attn", _fake_varlen(seen, new_api))
    front, back = rank_segments([9, 4, 6], 2, 1, "per_doc")
    g = torch.Generator().manual_seed(2)
    plan = varlen_plan(front + back)
    q = torch.randn(int(plan.cu_q[-1]), 4, 8, generator=g, dtype=torch.float64)
    k, v = (torch.randn(int(plan.cu_k[-1]), 2, 8, generator=g, dtype=torch.float64)
            for _ in range(2))
    out = _torch_varlen(q, k, v, plan, 8**-0.5)
    torch.testing.assert_close(out, standin_varlen(q, k, v, plan, 8**-0.5))
    assert ("window_size" in seen[0]) == new_api
    if not new_api:
        with pytest.raises(RuntimeError, match="no softmax scale"):
            _torch_varlen(q, k, v, plan, 0.5)


def _contract(q, k, v, cu_q, cu_k, scale):
    """The varlen contract written out row by row in float64 (independent of the SDPA stand-in):
    sequence i is queries cu_q[i]:cu_q[i+1] against keys cu_k[i]:cu_k[i+1], query r of lq sees
    keys j <= r + lk - lq (bottom-right causal); K/V heads repeat for GQA."""
    rep = q.shape[1] // k.shape[1]
    out = torch.empty(q.shape, dtype=torch.float64)
    cq, ck = cu_q.tolist(), cu_k.tolist()
    for i in range(len(cq) - 1):
        lq, lk = cq[i + 1] - cq[i], ck[i + 1] - ck[i]
        for r in range(lq):
            qi = q[cq[i] + r].double()  # [h, d]
            keys = k[ck[i]:ck[i] + r + lk - lq + 1].double().repeat_interleave(rep, 1)
            vals = v[ck[i]:ck[i] + r + lk - lq + 1].double().repeat_interleave(rep, 1)
            w = torch.softmax(torch.einsum("hd,jhd->hj", qi, keys) * scale, dim=-1)
            out[cq[i] + r] = torch.einsum("hj,jhd->hd", w, vals)
    return out.to(q.dtype)


def test_flash_and_te_adapters_call_the_documented_apis(monkeypatch):
    """flash-attn's ``flash_attn_varlen_func`` and TE's ``DotProductAttention`` (THD), faked with
    their documented signatures (no catch-all keywords: an undocumented name is a TypeError) on
    CPU: the adapters pass lengths, scale and the bottom-right causal mask by the right names,
    TE's [t, h*d] output comes back as [t, h, d], and the result is the dense reference's rows."""
    import sys
    import types

    from wlb.cp import kernels

    calls = {}

    def flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                               dropout_p=0.0, softmax_scale=None, causal=False,
                               window_size=(-1, -1), softcap=0.0, alibi_slopes=None,
                               deterministic=False, return_attn_probs=False, block_table=None):
        assert causal and dropout_p == 0.0 and not return_attn_probs
        assert window_size == (-1, -1) and alibi_slopes is None
        calls["flash"] = (max_seqlen_q, max_seqlen_k)
        return _contract(q, k, v, cu_seqlens_q, cu_seqlens_k, softmax_scale)

    class DotProductAttention(torch.nn.Module):
        def __init__(self, num_attention_heads, kv_channels, num_gqa_groups=None,
                     attention_dropout=0.0, qkv_format="sbhd", attn_mask_type="causal",
                     window_size=None, sequence_parallel=False, tp_size=1,
                     get_rng_state_tracker=None, tp_group=None, layer_number=None,
                     attention_type="self", cp_group=None, cp_global_ranks=None,
                     cp_stream=None, cp_comm_type="p2p", softmax_scale=None):
            super().__init__()
            assert qkv_format == "thd" and attn_mask_type == "padding_causal_bottom_right"
            assert attention_dropout == 0.0 and attention_type == "self" and cp_group is None
            self.h, self.d, self.g, self.scale = (num_attention_heads, kv_channels,
                                                  num_gqa_groups, softmax_scale)

        def forward(self, query_layer, key_layer, value_layer, attention_mask=None,
                    qkv_format=None, cu_seqlens_q=None, cu_seqlens_kv=None,
                    cu_seqlens_q_padded=None, cu_seqlens_kv_padded=None, max_seqlen_q=None,
                    max_seqlen_kv=None, attn_mask_type=None, window_size=None,
                    checkpoint_core_attention=False, core_attention_bias_type="no_bias",
                    core_attention_bias=None, alibi_slopes=None, fast_zero_fill=True,
                    inference_params=None):
            assert (query_layer.shape[1], query_layer.shape[2]) == (self.h, self.d)
            assert key_layer.shape[1] == self.g
            calls["te"] = (max_seqlen_q, max_seqlen_kv)
            out = _contract(query_layer, key_layer, value_layer, cu_seqlens_q, cu_seqlens_kv,
                            self.scale)
            return out.reshape(out.shape[0], -1)  # TE: [t, h*d]

    te = types.ModuleType("transformer_engine")
    te.pytorch = types.ModuleType("transformer_engine.pytorch")
    te.pytorch.DotProductAttention = DotProductAttention
    flash = types.ModuleType("flash_attn")
    flash.flash_attn_varlen_func = flash_attn_varlen_func
    monkeypatch.setitem(sys.modules, "flash_attn", flash)
    monkeypatch.setitem(sys.modules, "transformer_engine", te)
    monkeypatch.setitem(sys.modules, "transformer_engine.pytorch", te.pytorch)
    monkeypatch.setattr(kernels, "_TE_MODULES", {})
    monkeypatch.setattr(kernels, "_verified", set())

    lens = [9, 4, 6]
    g = torch.Generator().manual_seed(4)
    qg = torch.randn(sum(lens), 4, 8, generator=g, dtype=torch.float64)
    kg, vg = (torch.randn(sum(lens), 2, 8, generator=g, dtype=torch.float64) for _ in range(2))
    rows = shard_indices(lens, 2, 0, "per_doc")
    front, back = rank_segments(lens, 2, 0, "per_doc")
    plan = varlen_plan(front + back)
    want = reference_attention(qg, kg, vg, lens, 0.3)[rows]
    for name in ("flash", "te"):
        got = kernels.varlen_attention(name, qg[rows], kg, vg, front + back, 0.3)
        torch.testing.assert_close(got, want, msg=name)
        assert calls[name] == (plan.max_q, plan.max_k)
