"""CP attention vs a single-process dense reference, forward and all gradients, over gloo."""

import random

import pytest
import torch
import torch.distributed as dist

from tests.helpers.dist import run_distributed
from tests.helpers.reference import reference_attention
from wlb.cp import cp_attention, shard_indices


def cases(cp: int):
    rng = random.Random(100 + cp)
    out = []
    for strategy in ("per_seq", "per_doc"):
        for heads, kv_heads in ((4, 4), (4, 2)):
            lens = [1, rng.randint(1, 2 * cp - 1), rng.randint(1, 60), 1, rng.randint(20, 90)]
            out.append((strategy, heads, kv_heads, lens))
    # a micro-batch smaller than the group: some ranks hold no token at all
    out.append(("per_doc", 2, 1, [1]))
    out.append(("per_seq", 2, 2, [cp - 1 or 1]))
    # a total that is not a multiple of 2*CP (per_seq uneven shards, per_doc +-1 token)
    out.append(("per_seq", 2, 1, [7, 2 * cp + 3]))
    out.append(("per_doc", 2, 1, [7, 2 * cp + 3]))
    # mixed: documents of >= 2*CP*128 tokens per document, the runs of short ones per sequence
    big = 2 * cp * 128
    out.append(("mixed", 4, 2, [3, 1, big + 5, 7, 40, big, 2, rng.randint(1, 30)]))
    return out


def _check(rank, world, backend="torch"):
    if backend == "standin":  # the varlen adapter with a CPU stand-in for the GPU kernel
        from tests.helpers.varlen_standin import standin_varlen
        from wlb.cp.kernels import register_kernel

        register_kernel("standin", standin_varlen)
    group = dist.new_group(list(range(world)))
    for n, (strategy, h, hkv, lens) in enumerate(cases(world)):
        g = torch.Generator().manual_seed(n)
        T, d = sum(lens), 8
        q = torch.randn(T, h, d, generator=g)
        k = torch.randn(T, hkv, d, generator=g)
        v = torch.randn(T, hkv, d, generator=g)
        go = torch.randn(T, h, d, generator=g)
        qr, kr, vr = (x.clone().requires_grad_() for x in (q, k, v))
        ref = reference_attention(qr, kr, vr, lens)
        ref.backward(go)
        idx = shard_indices(lens, world, rank, strategy)
        ql, kl, vl = (x[idx].clone().requires_grad_() for x in (q, k, v))
        out = cp_attention(ql, kl, vl, lens, group, strategy, backend=backend)
        out.backward(go[idx])
        what = f"rank {rank} case {n} {strategy} {backend} h={h}/{hkv} lens={lens}"
        torch.testing.assert_close(out, ref.detach()[idx], atol=1e-5, rtol=0, msg=what)
        for name, a, b in (("dq", ql, qr), ("dk", kl, kr), ("dv", vl, vr)):
            torch.testing.assert_close(a.grad, b.grad[idx], atol=1e-5, rtol=0,
                                       msg=f"{name} {what}")


@pytest.mark.dist
@pytest.mark.parametrize("cp", [2, 3, 4])
def test_cp_attention_matches_reference(cp):
    run_distributed(_check, cp)


@pytest.mark.dist
@pytest.mark.parametrize("cp", [2, 3])
def test_varlen_adapter_matches_reference(cp):
    """The GPU varlen path (plan, K/V gathers, gradients) with a CPU stand-in kernel."""
    run_distributed(_check, cp, "standin")


def test_single_process_matches_reference_and_mask():
    lens = [3, 1, 6]
    T = sum(lens)
    torch.manual_seed(0)
    q, k, v = torch.randn(T, 2, 4), torch.randn(T, 2, 4), torch.randn(T, 2, 4)
    for strategy in ("per_seq", "per_doc"):
        idx = shard_indices(lens, 1, 0, strategy)
        out = cp_attention(q[idx], k[idx], v[idx], lens, None, strategy)
        torch.testing.assert_close(out, reference_attention(q, k, v, lens)[idx])
    # the first token of every document attends only to itself: output == its value
    ref = reference_attention(q, k, v, lens)
    for start in (0, 3, 4):
        torch.testing.assert_close(ref[start], v[start])


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
def test_reference_matches_flex_attention_document_mask():
    flex = pytest.importorskip("torch.nn.attention.flex_attention")
    lens = [5, 9, 2]
    T = sum(lens)
    torch.manual_seed(1)
    q, k, v = (torch.randn(1, 2, T, 8) for _ in range(3))
    ids = torch.repeat_interleave(torch.arange(3), torch.tensor(lens))

    def doc_causal(b, h, qi, kj):
        return (ids[qi] == ids[kj]) & (kj <= qi)

    mask = flex.create_block_mask(doc_causal, None, None, T, T, device="cpu")
    out = flex.flex_attention(q, k, v, block_mask=mask)
    ref = reference_attention(q[0].transpose(0, 1), k[0].transpose(0, 1), v[0].transpose(0, 1),
                              lens)
    torch.testing.assert_close(out[0].transpose(0, 1), ref, atol=1e-5, rtol=1e-5)


def test_bad_shapes_named():
    with pytest.raises(ValueError, match="holds 5 tokens"):
        cp_attention(torch.zeros(4, 2, 4), torch.zeros(4, 2, 4), torch.zeros(4, 2, 4), [5], None,
                     "per_doc")
    with pytest.raises(ValueError, match="kv_heads=2"):
        cp_attention(torch.zeros(5, 3, 4), torch.zeros(5, 2, 4), torch.zeros(5, 2, 4), [5], None,
                     "per_doc")
