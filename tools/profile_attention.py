#!/usr/bin/env python3
"""Measure attention throughput vs (query length, key length) and write a selector table.

Times forward+backward of one bottom-right-causal segment with one of the project's attention
kernels (``--attention-backend``: ``torch`` = ``wlb.cp.torch_kernel.attend_segments``, or a GPU
varlen kernel of ``wlb.cp.kernels``) on this machine, for a grid of query and key lengths,
and writes the JSON that ``wlb.cp.selector.KernelTable`` reads.

Examples:
    python tools/profile_attention.py --out wlb/cp/tables/cpu_torch_sdpa.json
    python tools/profile_attention.py --attention-backend flash --dtype bfloat16 \
        --heads 32 --kv-heads 8 --head-dim 128 --tile-q 128 --out h100_flash.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from wlb.cp.kernels import BACKENDS, resolve_backend, varlen_attention  # noqa: E402
from wlb.cp.shard import (
    Segment,  # noqa: E402
    causal_pairs,  # noqa: E402
)
from wlb.cp.torch_kernel import attend_segments, attend_segments_backward  # noqa: E402


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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv-heads", type=int, default=4)
    p.add_argument("--head-dim", type=int, default=64)
    p.add_argument("--q-lens", default=",".join(map(str, Q_LENS)))
    p.add_argument("--kv-lens", default=",".join(map(str, KV_LENS)))
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--tile-q", type=int, default=1, help="kernel query tile (128 for flash)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    p.add_argument("--attention-backend", default="torch", choices=BACKENDS,
                   help="attention kernel to time (as pretrain_gpt_wlb.py's flag)")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    try:
        resolve_backend(a.attention_backend,
                        torch.empty(0, device=a.device, dtype=getattr(torch, a.dtype)))
    except (RuntimeError, ValueError) as e:
        print(f"profile_attention.py: error: {e}", file=sys.stderr)
        return 2
    table = measure_table(a.heads, a.kv_heads, a.head_dim,
                          [int(x) for x in a.q_lens.split(",")],
                          [int(x) for x in a.kv_lens.split(",")], reps=a.reps, device=a.device,
                          dtype=a.dtype, tile_q=a.tile_q, threads=a.threads,
                          backend=a.attention_backend, log=lambda m: print(m, flush=True))
    table["command"] = "python tools/profile_attention.py " + " ".join(argv or sys.argv[1:])
    tmp = a.out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(table, f, indent=1, allow_nan=True)
    os.replace(tmp, a.out)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
