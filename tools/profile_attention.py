#!/usr/bin/env python3
"""Measure attention throughput vs (query length, key length) and write a selector table.

Times forward+backward of one bottom-right-causal segment with one of the project's attention
kernels (``--attention-backend``: ``torch`` = ``wlb.cp.torch_kernel.attend_segments``, or a GPU
varlen kernel of ``wlb.cp.kernels``) on this machine, for a grid of query and key lengths,
and writes the JSON that ``wlb.cp.selector.KernelTable`` reads.

Examples:
    python -m tools.profile_attention --out wlb/cp/tables/cpu_torch_sdpa.json
    python -m tools.profile_attention --attention-backend flash --dtype bfloat16 \
        --heads 32 --kv-heads 8 --head-dim 128 --tile-q 128 --out h100_flash.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch

from wlb.cp.kernels import BACKENDS, resolve_backend
from wlb.cp.profile import KV_LENS, Q_LENS, measure_table


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
    table["command"] = "python -m tools.profile_attention " + " ".join(argv or sys.argv[1:])
    tmp = a.out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(table, f, indent=1, allow_nan=True)
    os.replace(tmp, a.out)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
