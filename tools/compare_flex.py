#!/usr/bin/env python3
"""Is FlexAttention a better CPU backend than our SDPA-per-segment path? Measured, fwd and bwd.

Times, on one packed micro-batch with a causal document mask (1 thread, fp32):
* FlexAttention forward, eager and ``torch.compile``d (block mask built once, as it would be
  per micro-batch);
* our ``attend_segments`` forward;
* the backward of each, where the build supports it (torch 2.13's FlexAttention refuses backward
  on CPU; the tool reports the error text rather than a time).

Example:
    python -m tools.compare_flex --doc-lens 1900,700,500,300,200,150,100,90,80,50,20,6
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

import torch

from wlb.cp.shard import rank_segments
from wlb.cp.torch_kernel import attend_segments, attend_segments_backward


def best_ms(fn, reps: int) -> float:
    fn()  # warm-up (and compilation)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times) * 1e3


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--doc-lens", default="1900,700,500,300,200,150,100,90,80,50,20,6")
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--head-dim", type=int, default=64)
    p.add_argument("--reps", type=int, default=3)
    a = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    lens = [int(x) for x in a.doc_lens.split(",")]
    T, H, D = sum(lens), a.heads, a.head_dim
    ids = torch.repeat_interleave(torch.arange(len(lens)), torch.tensor(lens))

    def doc_causal(b, h, qi, kj):
        return (ids[qi] == ids[kj]) & (kj <= qi)

    block = create_block_mask(doc_causal, None, None, T, T, device="cpu")
    q, k, v = (torch.randn(1, H, T, D) for _ in range(3))  # [b, h, T, d]
    compiled = torch.compile(flex_attention)
    segs = [s for half in rank_segments(lens, 1, 0, "per_seq") for s in half]
    qs, ks, vs = (x[0].transpose(0, 1).contiguous() for x in (q, k, v))  # [T, h, d]
    scale = D**-0.5
    print(f"T={T} tokens, {len(lens)} documents, {H} heads x {D}, fp32, 1 thread; best of "
          f"{a.reps} (ms)")
    rows = {
        "flex eager     fwd": lambda: flex_attention(q, k, v, block_mask=block),
        "flex compiled  fwd": lambda: compiled(q, k, v, block_mask=block),
        "ours (SDPA)    fwd": lambda: attend_segments(qs, ks, vs, segs, scale),
    }
    for name, fn in rows.items():
        print(f"  {name} {best_ms(fn, a.reps):9.1f}")

    def ours_fwd_bwd():
        out = attend_segments(qs, ks, vs, segs, scale)
        attend_segments_backward(qs, ks, vs, segs, scale, torch.ones_like(out))

    print(f"  ours (SDPA)    fwd+bwd {best_ms(ours_fwd_bwd, a.reps):5.1f}")
    ql, kl, vl = (x.clone().requires_grad_() for x in (q, k, v))
    try:
        compiled(ql, kl, vl, block_mask=block).sum().backward()
        print("  flex compiled  backward: supported here (time it before switching)")
    except (NotImplementedError, RuntimeError) as e:
        print(f"  flex backward: not available on CPU: {type(e).__name__}: {str(e)[:120]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
