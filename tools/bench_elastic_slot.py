#!/usr/bin/env python3
"""Where elastic CP's predicted gain goes on this machine: one slot of two micro-batches.

A slot of DP = 2 replicas holds a heavy micro-batch (``--heavy``, document lengths) and a light
one (``--light``). The fixed layout runs each on its own rank; elastic CP runs both as one packed
sequence over the two ranks (sharded by ``--strategy``). This times one attention layer's
forward + backward (the part elastic CP splits; ``wlb.cp``) on 2 gloo processes:

* **fixed**: each rank its own micro-batch, no collective; the slot is the slower rank;
* **ideal**: the two fixed times' sum / 2 (a perfect split at no cost);
* **pooled, compute**: each rank's shard of the pooled sequence, timed *one rank at a time*
  against K/V already gathered (what the split's kernel shapes cost);
* **pooled, full call**: ``cp_attention`` as training runs it, both ranks at once (adds the K/V
  all-gather, the gradient reduce-scatter and waiting for the slower rank).

Example (the default: a 3,900-token document among short ones, vs short documents):

    python -m tools.bench_elastic_slot --reps 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

HEAVY = "3900,1200,800,500,300,200,150,100,100,50"
LIGHT = ",".join(["600,500,400"] * 6 + ["100"] * 5)


def _call(lens, group, strategy, a, rank, world):
    """``cp_attention`` forward + backward of ``lens`` as rank ``rank`` of ``world``."""
    from wlb.cp import cp_attention, shard_indices

    g = torch.Generator().manual_seed(0)
    qkv = [torch.randn(sum(lens), a.heads, a.head_dim, generator=g) for _ in range(3)]
    idx = shard_indices(lens, world, rank, strategy)
    q, k, v = (x[idx].clone().requires_grad_() for x in qkv)
    cp_attention(q, k, v, lens, group, strategy).sum().backward()


def _median_ms(fn, reps: int) -> float:
    out = []
    for _ in range(reps + 1):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(out[1:])  # the first call warms up


def worker(rank, world, port, a, out_path):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    heavy, light = ([int(x) for x in s.split(",")] for s in (a.heavy, a.light))
    pooled, mine = heavy + light, heavy if rank == 0 else light
    fixed = solo = 0.0
    for turn in range(world):  # one rank at a time: no contention for the cores
        dist.barrier()
        if turn == rank:
            fixed = _median_ms(lambda: _call(mine, None, "per_seq", a, 0, 1), a.reps)
            solo = _solo_pooled(pooled, a, rank)
        dist.barrier()

    def full():
        dist.barrier()
        _call(pooled, dist.group.WORLD, a.strategy, a, rank, world)

    wall = _median_ms(full, a.reps)
    rows = [None] * world
    dist.all_gather_object(rows, (fixed, solo, wall))
    if rank == 0:
        res = {"fixed_rank_ms": [r[0] for r in rows],
               "pooled_compute_rank_ms": [r[1] for r in rows],
               "pooled_full_ms": max(r[2] for r in rows)}
        with open(out_path, "w", encoding="utf-8") as f:
            json.dump(res, f)
    dist.destroy_process_group()


def _solo_pooled(lens, a, rank) -> float:
    """This rank's shard of the pooled sequence against gathered K/V, compute only."""
    from wlb.cp import shard_indices
    from wlb.cp.layout import build_layout
    from wlb.cp.torch_kernel import attend_segments, attend_segments_backward

    layout = build_layout(tuple(lens), 2, rank, a.strategy)
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(sum(lens), a.heads, a.head_dim, generator=g) for _ in range(3))
    ql = q[shard_indices(lens, 2, rank, a.strategy)]
    scale = a.head_dim ** -0.5

    def run():
        out = attend_segments(ql, k, v, layout.segments, scale)
        attend_segments_backward(ql, k, v, layout.segments, scale, torch.ones_like(out))

    return _median_ms(run, a.reps)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--heavy", default=HEAVY, help="the heavy micro-batch's document lengths")
    p.add_argument("--light", default=LIGHT, help="the light micro-batch's document lengths")
    p.add_argument("--strategy", default="per_doc", choices=("per_doc", "per_seq", "mixed"))
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--head-dim", type=int, default=16)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "out.json")
        mp.spawn(worker, args=(2, _free_port(), a, path), nprocs=2, join=True)
        with open(path, encoding="utf-8") as f:
            res = json.load(f)
    fixed = max(res["fixed_rank_ms"])
    ideal = sum(res["fixed_rank_ms"]) / 2
    comp = max(res["pooled_compute_rank_ms"])
    full = res["pooled_full_ms"]
    res.update(fixed_slot_ms=fixed, ideal_ms=ideal, speedup_ideal=fixed / ideal,
               speedup_compute=fixed / comp, speedup_full=fixed / full)
    if a.json:
        print(json.dumps(res))
        return 0
    print(f"one attention layer, fwd+bwd, {a.heads} heads x {a.head_dim}, {a.strategy} when "
          f"pooled, median of {a.reps}")
    print(f"  fixed: heavy {res['fixed_rank_ms'][0]:.1f} ms, light "
          f"{res['fixed_rank_ms'][1]:.1f} ms -> slot {fixed:.1f} ms")
    print(f"  ideal (sum / 2):          {ideal:7.1f} ms  {fixed / ideal:.3f}x")
    print(f"  pooled, compute only:     {comp:7.1f} ms  {fixed / comp:.3f}x  (ranks "
          + ", ".join(f"{x:.1f}" for x in res["pooled_compute_rank_ms"]) + ")")
    print(f"  pooled, full call:        {full:7.1f} ms  {fixed / full:.3f}x  (+ all-gather, "
          "reduce-scatter, waiting)")
    return 0


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    sys.exit(main())
