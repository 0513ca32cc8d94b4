#!/usr/bin/env python3
"""Measure attention throughput vs (query length, key length) and write a selector table.

Times forward+backward of one bottom-right-causal segment with the project's attention backend
(``wlb.cp.attention.attend_segments``) on this machine, for a grid of query and key lengths, and
writes the JSON that ``wlb.cp.selector.KernelTable`` reads.

Example:
    python tools/profile_attention.py --out wlb/cp/tables/cpu_torch_sdpa.json
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

from wlb.cp.attention import attend_segments, attend_segments_backward  # noqa: E402
from wlb.cp.selector import _causal_pairs  # noqa: E402
from wlb.cp.shard import Segment  # noqa: E402


def time_segment(q_len, kv_len, heads, kv_heads, dim, reps, device, dtype) -> float:
    q = torch.randn(q_len, heads, dim, device=device, dtype=dtype)
    k = torch.randn(kv_len, kv_heads, dim, device=device, dtype=dtype)
    v = torch.randn(kv_len, kv_heads, dim, device=device, dtype=dtype)
    seg = [Segment(0, 0, kv_len - q_len, q_len)]
    best = float("inf")
    for _ in range(reps + 1):  # first run warms up
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = attend_segments(q, k, v, seg, dim**-0.5)
        attend_segments_backward(q, k, v, seg, dim**-0.5, torch.ones_like(out))
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best * 1e6


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv-heads", type=int, default=4)
    p.add_argument("--head-dim", type=int, default=64)
    p.add_argument("--q-lens", default="1,4,16,64,256,1024,4096")
    p.add_argument("--kv-lens", default="1,4,16,64,256,1024,4096,8192")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--tile-q", type=int, default=1, help="kernel query tile (128 for flash)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    qs = [int(x) for x in a.q_lens.split(",")]
    kvs = [int(x) for x in a.kv_lens.split(",")]
    dtype = getattr(torch, a.dtype)
    grid = []
    for q in qs:
        row = []
        for kv in kvs:
            if kv < q:
                row.append(float("nan"))
                continue
            us = time_segment(q, kv, a.heads, a.kv_heads, a.head_dim, a.reps, a.device, dtype)
            row.append(_causal_pairs(q, kv) / us)
            print(f"q={q:>6} kv={kv:>6}  {us:10.1f} us  {row[-1]:10.2f} pairs/us", flush=True)
        grid.append(row)
    table = {
        "backend": f"torch-sdpa-{a.device}",
        "tile_q": a.tile_q,
        "heads": a.heads,
        "kv_heads": a.kv_heads,
        "head_dim": a.head_dim,
        "dtype": a.dtype,
        "threads": a.threads,
        "machine": f"{platform.machine()} {platform.processor() or ''} torch {torch.__version__}",
        "q_lens": qs,
        "kv_lens": kvs,
        "pairs_per_us": grid,
        "command": "python tools/profile_attention.py " + " ".join(argv or sys.argv[1:]),
    }
    tmp = a.out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(table, f, indent=1, allow_nan=True)
    os.replace(tmp, a.out)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
