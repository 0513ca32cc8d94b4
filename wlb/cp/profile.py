"""Time an attention kernel: one rank's segments (fwd+bwd), and its throughput over a grid.

:func:`time_fwd_bwd` times one rank's query segments through a kernel (``tools/bench_cp.py``
uses it per CP rank). :func:`measure_table` times single segments over a (query length, key
length) grid; the result is the table :class:`wlb.cp.selector.KernelTable` reads (causal pairs per
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


def fwd_bwd(backend: str, q, k, v, segments, scale) -> None:
    """One forward + backward of causal document attention: local queries ``q`` [t, h, d]
    against global-order ``k``/``v`` [T, hkv, d] over ``segments``, through kernel ``backend``
    (a resolved name: ``torch`` or a varlen kernel)."""
    if backend == "torch":
        out = attend_segments(q, k, v, segments, scale)
        attend_segments_backward(q, k, v, segments, scale, torch.ones_like(out))
        return
    leaves = [x.detach().requires_grad_() for x in (q, k, v)]
    varlen_attention(backend, *leaves, segments, scale).sum().backward()


def time_fwd_bwd(backend: str, q, k, v, segments, scale, reps: int) -> float:
    """Best wall seconds of ``reps`` calls of :func:`fwd_bwd` after one warm-up call, the
    device synchronised around each (GPU kernels run asynchronously)."""
    cuda = q.is_cuda
    best = float("inf")
    for _ in range(reps + 1):  # first run warms up
        if cuda:
            torch.cuda.synchronize(q.device)
        t0 = time.perf_counter()
        fwd_bwd(backend, q, k, v, segments, scale)
        if cuda:
            torch.cuda.synchronize(q.device)
        best = min(best, time.perf_counter() - t0)
    return best


def time_segment(q_len, kv_len, heads, kv_heads, dim, reps, device, dtype,
                 backend: str = "torch") -> float:
    """Microseconds of fwd+bwd of one bottom-right causal segment (``q_len`` queries, the last
    of which sees ``kv_len`` keys)."""
    q = torch.randn(q_len, heads, dim, device=device, dtype=dtype)
    k = torch.randn(kv_len, kv_heads, dim, device=device, dtype=dtype)
    v = torch.randn(kv_len, kv_heads, dim, device=device, dtype=dtype)
    seg = [Segment(0, 0, kv_len - q_len, q_len)]
    return time_fwd_bwd(backend, q, k, v, seg, dim**-0.5, reps) * 1e6


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
