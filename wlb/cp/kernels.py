"""Attention kernels behind CP attention: which code computes one rank's query segments.

A rank's attention work is a list of query segments (:class:`wlb.cp.shard.Segment`): segment s
holds the queries at document positions ``start .. start+length-1`` of one document and attends
causally to that document's keys ``0 .. start+length-1``. In varlen (``cu_seqlens``) form that is
one sequence per segment with ``q_len = length`` and ``k_len = start + length``, under a causal
mask aligned **bottom-right** (the last query sees every key).

Backends (``--attention-backend``):

- ``torch``: SDPA per segment with short segments batched (:mod:`wlb.cp.torch_kernel`); CPU
  and GPU, any dtype. The reference everything else is tested against.
- ``varlen``: ``torch.nn.attention.varlen.varlen_attn``, PyTorch's own FlashAttention-2 varlen
  kernel (CUDA, fp16/bf16; no extra package).
- ``flash``: ``flash_attn.flash_attn_varlen_func`` (flash-attn >= 2.1; CUDA, fp16/bf16).
- ``te``: TransformerEngine ``DotProductAttention`` with ``qkv_format="thd"`` and
  ``attn_mask_type="padding_causal_bottom_right"`` (CUDA, fp16/bf16).
- ``auto``: on CUDA fp16/bf16 inputs the first importable of flash, te, varlen; otherwise torch.

This is the only module that imports flash-attn or TransformerEngine, and only when asked to.
Every varlen kernel is checked once per (kernel, device, dtype, heads) on a tiny case whose
queries are fewer than its keys: a kernel that aligns the causal mask top-left (flash-attn < 2.1)
would be silently wrong, so it is refused with an error instead.
"""

from __future__ import annotations

import importlib.util
import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import torch

from wlb.cp.shard import Segment
from wlb.cp.torch_kernel import torch_kernel

BACKENDS = ("auto", "torch", "varlen", "flash", "te")
#: order in which ``auto`` tries the GPU kernels
AUTO_ORDER = ("flash", "te", "varlen")
_HALF = (torch.float16, torch.bfloat16)


@dataclass(frozen=True)
class VarlenPlan:
    """One rank's segments as a varlen batch (tensors on the device of the call).

    Attributes:
        kv_idx: [sum k_len] rows of the global-order K/V buffer, segment after segment.
        cu_q, cu_k: int32 [n+1] cumulative query / key lengths.
        max_q, max_k: longest query / key run.
    """

    kv_idx: torch.Tensor
    cu_q: torch.Tensor
    cu_k: torch.Tensor
    max_q: int
    max_k: int


@lru_cache(maxsize=256)
def varlen_plan(segments: tuple[Segment, ...], device: str = "cpu") -> VarlenPlan:
    """Varlen form of ``segments`` (queries stay where they are: rows in segment order).

    Example: doc_lens [6, 3], CP=2, per_doc, rank 0 holds (doc 0, q 0-1), (doc 1, q 0),
    (doc 0, q 5), (doc 1, q 2). Then cu_q = [0, 2, 3, 4, 5], the key runs have lengths
    [2, 1, 6, 3] so cu_k = [0, 2, 3, 9, 12], and kv_idx = [0, 1, 6, 0..5, 6, 7, 8].
    Empty segments are dropped (they hold no query rows).
    """
    segs = [s for s in segments if s.length > 0]
    q_lens = [s.length for s in segs]
    k_lens = [s.start + s.length for s in segs]
    idx = [range(s.doc_start, s.doc_start + s.start + s.length) for s in segs]
    kv_idx = torch.tensor([i for r in idx for i in r], dtype=torch.long)

    def cu(lens):
        return torch.tensor([0, *torch.tensor(lens, dtype=torch.long).cumsum(0).tolist()],
                            dtype=torch.int32)

    return VarlenPlan(
        kv_idx=kv_idx.to(device),
        cu_q=cu(q_lens).to(device),
        cu_k=cu(k_lens).to(device),
        max_q=max(q_lens, default=0),
        max_k=max(k_lens, default=0),
    )


#: kernel(q [tq, h, d], k [tk, hkv, d], v, plan, scale) -> [tq, h, d]; differentiable
VarlenKernel = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, VarlenPlan, float],
                        torch.Tensor]


#: kernel(q [t_local, h, d], kv [T, hkv, 2d] gathered K|V in global order, segments, scale)
#: -> [t_local, h, d]; differentiable w.r.t. q and kv
SegmentKernel = Callable[[torch.Tensor, torch.Tensor, Sequence[Segment], float], torch.Tensor]


@dataclass(frozen=True)
class KernelEntry:
    """A registered attention kernel.

    Attributes:
        fn: a varlen kernel (:data:`VarlenKernel`: the rank's segments as one ``cu_seqlens``
            batch, checked for bottom-right alignment once) or, with ``varlen=False``, a
            :data:`SegmentKernel` that takes the segments and the gathered K|V buffer itself.
        module: Python module it needs (checked with ``find_spec``), or None.
        needs_cuda: refuse CPU tensors with a clear error.
        varlen: which of the two contracts ``fn`` follows.
    """

    fn: VarlenKernel | SegmentKernel
    module: str | None
    needs_cuda: bool
    varlen: bool = True


@lru_cache(maxsize=4)
def _parameters(fn) -> frozenset[str]:
    """Keyword names ``fn`` takes (inspected once per function, not on every call)."""
    return frozenset(inspect.signature(fn).parameters)


def _torch_varlen(q, k, v, plan: VarlenPlan, scale: float):
    from torch.nn.attention.varlen import varlen_attn

    params = _parameters(varlen_attn)
    kw = {}
    if "scale" in params:
        kw["scale"] = scale
    elif not math.isclose(scale, q.shape[-1] ** -0.5):
        raise RuntimeError(f"this torch's varlen_attn takes no softmax scale (needed {scale}); "
                           "use --attention-backend torch or flash")
    if "window_size" in params:  # torch >= 2.10
        kw["window_size"] = (-1, 0)
    else:
        kw["is_causal"] = True
    if q.shape[1] != k.shape[1]:
        if "enable_gqa" in params:
            kw["enable_gqa"] = True
        else:  # older torch: repeat K/V heads for GQA
            rep = q.shape[1] // k.shape[1]
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
    return varlen_attn(q, k, v, plan.cu_q, plan.cu_k, plan.max_q, plan.max_k, **kw)


def _flash_varlen(q, k, v, plan: VarlenPlan, scale: float):
    from flash_attn import flash_attn_varlen_func

    return flash_attn_varlen_func(q, k, v, plan.cu_q, plan.cu_k, plan.max_q, plan.max_k,
                                  dropout_p=0.0, softmax_scale=scale, causal=True)


_TE_MODULES: dict = {}


def _te_varlen(q, k, v, plan: VarlenPlan, scale: float):
    key = (q.shape[1], k.shape[1], q.shape[2], scale, str(q.device))
    if key not in _TE_MODULES:
        import transformer_engine.pytorch as te

        _TE_MODULES[key] = te.DotProductAttention(
            q.shape[1], q.shape[2], num_gqa_groups=k.shape[1], attention_dropout=0.0,
            qkv_format="thd", attn_mask_type="padding_causal_bottom_right", softmax_scale=scale,
        ).to(q.device)
    out = _TE_MODULES[key](q, k, v, cu_seqlens_q=plan.cu_q, cu_seqlens_kv=plan.cu_k,
                           max_seqlen_q=plan.max_q, max_seqlen_kv=plan.max_k)
    return out.view(q.shape[0], q.shape[1], -1)  # TE returns [t, h*d]


KERNELS: dict[str, KernelEntry] = {
    "torch": KernelEntry(torch_kernel, None, needs_cuda=False, varlen=False),
    "varlen": KernelEntry(_torch_varlen, "torch.nn.attention.varlen", needs_cuda=True),
    "flash": KernelEntry(_flash_varlen, "flash_attn", needs_cuda=True),
    "te": KernelEntry(_te_varlen, "transformer_engine", needs_cuda=True),
}


def register_kernel(name: str, fn: VarlenKernel, module: str | None = None,
                    needs_cuda: bool = False) -> None:
    """Add (or replace) a varlen kernel under ``name`` (tests use a CPU stand-in)."""
    KERNELS[name] = KernelEntry(fn, module, needs_cuda)
    _verified.clear()


@lru_cache(maxsize=16)
def _importable(module: str | None) -> bool:
    """Whether ``module`` can be imported (looked up once per process: resolve_backend runs on
    every attention call)."""
    if module is None:
        return True
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def resolve_backend(name: str, q: torch.Tensor) -> str:
    """The kernel ``name`` stands for on tensors like ``q``; clear errors when it cannot run.

    ``auto`` -> first importable of :data:`AUTO_ORDER` for CUDA fp16/bf16, else ``torch``.
    """
    if name == "auto":
        if q.is_cuda and q.dtype in _HALF:
            for cand in AUTO_ORDER:
                if _importable(KERNELS[cand].module):
                    return cand
        return "torch"
    if name not in KERNELS:
        raise ValueError(f"--attention-backend={name!r}; choose from "
                         f"{sorted(set(BACKENDS) | set(KERNELS))}")
    entry = KERNELS[name]
    if not _importable(entry.module):
        raise RuntimeError(f"--attention-backend {name} needs the Python module "
                           f"{entry.module!r}, which is not installed")
    if entry.needs_cuda and not (q.is_cuda and q.dtype in _HALF):
        raise RuntimeError(f"--attention-backend {name} needs CUDA fp16/bf16 tensors; got "
                           f"{q.device.type} {q.dtype} (use --bf16 on GPUs, or 'torch')")
    return name


def _dense_bottom_right(q, k, v, q_lens: Sequence[int], k_lens: Sequence[int], scale: float):
    """fp32 reference of the varlen semantics, one sequence at a time (for the check below)."""
    outs, q0, k0 = [], 0, 0
    rep = q.shape[1] // k.shape[1]
    for lq, lk in zip(q_lens, k_lens):
        qs = q[q0:q0 + lq].float().transpose(0, 1)  # [h, lq, d]
        ks = k[k0:k0 + lk].float().repeat_interleave(rep, 1).transpose(0, 1)  # [h, lk, d]
        vs = v[k0:k0 + lk].float().repeat_interleave(rep, 1).transpose(0, 1)
        s = qs @ ks.transpose(1, 2) * scale  # [h, lq, lk]
        allowed = torch.arange(lk)[None, :] <= torch.arange(lq)[:, None] + (lk - lq)
        s = s.masked_fill(~allowed.to(s.device), float("-inf"))
        outs.append((s.softmax(-1) @ vs).transpose(0, 1))  # [lq, h, d]
        q0, k0 = q0 + lq, k0 + lk
    return torch.cat(outs)


_verified: set = set()


def check_alignment(name: str, heads: int, kv_heads: int, dim: int, device, dtype) -> None:
    """Refuse a kernel whose causal mask is not bottom-right aligned (checked once per setup).

    Two sequences: 3 queries against 7 keys (top-left alignment would hide 4 of the keys from
    the first query), and 2 against 2.
    """
    key = (name, str(device), dtype, heads, kv_heads, dim)
    if key in _verified:
        return
    g = torch.Generator().manual_seed(0)
    q_lens, k_lens = [3, 2], [7, 2]
    q = torch.randn(sum(q_lens), heads, dim, generator=g).to(device, dtype)
    k = torch.randn(sum(k_lens), kv_heads, dim, generator=g).to(device, dtype)
    v = torch.randn(sum(k_lens), kv_heads, dim, generator=g).to(device, dtype)
    plan = VarlenPlan(
        kv_idx=torch.arange(sum(k_lens), device=device),
        cu_q=torch.tensor([0, 3, 5], dtype=torch.int32, device=device),
        cu_k=torch.tensor([0, 7, 9], dtype=torch.int32, device=device),
        max_q=3, max_k=7,
    )
    scale = 1.0 / math.sqrt(dim)
    with torch.no_grad():
        got = KERNELS[name].fn(q, k, v, plan, scale).float()
    want = _dense_bottom_right(q, k, v, q_lens, k_lens, scale)
    err = (got - want).abs().max().item()
    tol = 1e-4 if dtype == torch.float32 else 3e-2
    if not err <= tol:
        raise RuntimeError(
            f"attention backend {name!r} disagrees with bottom-right causal attention by {err:.3g}"
            f" (tolerance {tol}) on {device} {dtype}: its causal mask is probably aligned "
            "top-left (flash-attn < 2.1?). Upgrade it or use --attention-backend torch."
        )
    _verified.add(key)


def varlen_attention(name: str, q, k_g, v_g, segments: Sequence[Segment], scale: float):
    """Causal document attention of local queries ``q`` [t_local, h, d] against global-order
    ``k_g``/``v_g`` [T, hkv, d] through kernel ``name``; differentiable w.r.t. all three."""
    check_alignment(name, q.shape[1], k_g.shape[1], q.shape[2], q.device, q.dtype)
    plan = varlen_plan(tuple(segments), str(q.device))
    if plan.max_q == 0:  # no local queries; keep K/V in the graph so the gather's backward
        return q + 0.0 * (k_g.sum() + v_g.sum())  # (a collective) still runs on this rank
    kp = k_g.index_select(0, plan.kv_idx)  # [sum k_len, hkv, d]
    vp = v_g.index_select(0, plan.kv_idx)
    return KERNELS[name].fn(q, kp, vp, plan, scale)


def attend(name: str, q: torch.Tensor, kv: torch.Tensor, segments: Sequence[Segment],
           scale: float) -> torch.Tensor:
    """Causal document attention of local queries ``q`` [t_local, h, d] against the gathered
    K|V buffer ``kv`` [T, hkv, 2d] (global order) through the registered kernel ``name``."""
    entry = KERNELS[name]
    if not entry.varlen:
        return entry.fn(q, kv, segments, scale)
    d = q.shape[-1]
    return varlen_attention(name, q, kv[..., :d], kv[..., d:], segments, scale)
