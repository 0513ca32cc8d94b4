"""Measure an attention kernel's throughput over a (query length, key length) grid.

The result is the table :class:`wlb.cp.selector.KernelTable` reads (causal pairs per
microsecond, forward + backward). ``tools/calibrate_cost_model.py`` embeds one in its
calibration file (``--attention-only``: writes one on its own).
"""

from __future__ import annotations

import platform
import time

import torch

from wlb.cp.kernels import resolve_backend, varlen_attention
from wlb.cp.shard import Segment, causal_pairs
from wlb.cp.torch_kernel import attend_segments, attend_segments_backward


def _fwd_bwd(backend: str, q, k, v, seg, scale) -> None:
    if backend == "torch":
        out = attend_segments(q, k, v, seg, scale)
        attend_segments_backward(q, k, v, seg, scale, torch.ones_like(out))
        return
    leaves = [x.detach().requires_grad_() for x in (q, k, v)]
    varlen_attention(backend, *leaves, seg, scale).sum().backward()


def time_segment(q_len, kv_len, heads, kv_heads, dim, reps, device, dtype,
                 backend: str = "torch") -> float:
    q = torch.randn(q_len, heads, dim, device=device, dtype=dtype)
    k = torch.randn(kv_len, kv_heads, dim, device=device, dtype=dtype)
    v = torch.randn(kv_len, kv_heads, dim, device=device, dtype=dtype)
    seg = [Segment(0, 0, kv_len - q_len, q_len)]
    best = float("inf")
    for _ in range(reps + 1):  # first run warms up
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        _fwd_bwd(backend, q, k, v, seg, dim**-0.5)
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best * 1e6


#: default grid of query and key lengths (tokens)
Q_LENS = (1, 4, 16, 64, 256, 1024, 4096)
KV_LENS = (1, 4, 16, 64, 256, 1024, 4096, 8192)


def measure_table(heads: int, kv_heads: int, head_dim: int, q_lens: list[int],
                  kv_lens: list[int], *, reps: int = 3, device: str = "cpu",
                  dtype: str = "float32", tile_q: int = 1, threads: int = 1,
                  backend: str = "torch", log=print) -> dict:
    """Time an attention kernel over a (query length, key length) grid; returns the table
    ``wlb.cp.selector.KernelTable`` reads (causal pairs per microsecond, fwd+bwd)."""
    backend = resolve_backend(backend, torch.empty(0, device=device, dtype=getattr(torch, dtype)))
    grid = []
    for q in q_lens:
        row = []
        for kv in kv_lens:
            if kv < q:
                row.append(float("nan"))
                continue
            us = time_segment(q, kv, heads, kv_heads, head_dim, reps, device,
                              getattr(torch, dtype), backend)
            row.append(causal_pairs(q, kv) / us)
            log(f"q={q:>6} kv={kv:>6}  {us:10.1f} us  {row[-1]:10.2f} pairs/us")
        grid.append(row)
    return {
        "backend": f"torch-sdpa-{device}" if backend == "torch" else f"{backend}-{device}",
        "tile_q": tile_q,
        "heads": heads,
        "kv_heads": kv_heads,
        "head_dim": head_dim,
        "dtype": dtype,
        "threads": threads,
        "machine": f"{platform.machine()} {platform.processor() or ''} torch {torch.__version__}",
        "q_lens": list(q_lens),
        "kv_lens": list(kv_lens),
        "pairs_per_us": grid,
    }
