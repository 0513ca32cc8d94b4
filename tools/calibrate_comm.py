#!/usr/bin/env python3
"""Price elastic CP's K/V all-gather and document split on this machine, for a cost-model file.

Run under torchrun with as many processes as the widest group to price (2 here: one node's
loopback; on a cluster, the processes of the group that may cross nodes). Each process times
what one layer of a group's micro-batch exchanges: the forward's K/V all-gather of
``n`` local tokens and the backward's reduce-scatter of their gradient (``wlb.cp.attention``),
for several ``n``; the slowest rank's median counts. It fits, per micro-batch (all layers),
``t = fixed + coef x n x (g - 1)`` (``n x (g - 1)``: the tokens a rank receives, which is
``tokens x (g - 1) / g`` of a group's ``tokens``) and writes ``elastic_comm_coef`` and
``elastic_comm_fixed`` into the cost-model file, in its units (its ``fit_ms`` says how many ms
one unit is), where ``--wlb-elastic-cp`` reads them.

It also times one layer's attention (forward + backward, the ``torch`` kernel, compute only) of
three micro-batches (``--split-lengths``, or with ``--split-sample`` drawn from the run's own
length sample: one long document among drawn ones, as the slots elastic CP regroups hold; short
documents' chunks cost more than their share), whole on every rank at once, then split over
the g ranks (``--split-strategy``, every rank its shard at once, the slowest counting),
and writes the median of ``whole / (g x split)`` as ``elastic_split_efficiency`` (at most 1):
how much of the ideal ``1 / g`` a split micro-batch's attention reaches
(``wlb.elastic.plan.ElasticCost``). Example:

    python -m torch.distributed.run --standalone --nproc_per_node 2 -m tools.calibrate_comm \\
        --cost-model reports/bench_cpu/cost_model_l2_h64_a4_s8192.json

The model's shape (layers, heads, KV groups, head size) comes from the file's ``model`` entry.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

from wlb.host.elastic import COMM_KEYS as KEYS  # where --wlb-elastic-cp reads them
from wlb.host.elastic import SPLIT_KEY

#: the default ``--split-lengths``: a long document alone, and long documents among short ones
SPLIT_BATCHES = "4096;2048,1024,512,256,256,128,128,64,64,64;4096,1024,512,512,256,256,128,128"


def fit_line(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares ``y = a + b x`` with both clamped at >= 0; returns (a, b)."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    b = max(sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx, 0.0) if sxx else 0.0
    return max(my - b * mx, 0.0), b


def _time_layer(n: int, row: tuple[int, ...], repeats: int, group) -> float:
    """Median ms of one layer's all-gather + reduce-scatter of ``n`` local tokens (slowest
    rank)."""
    import torch
    import torch.distributed as dist

    # (torch >= 2.13 names them *_single; older torch, common on GPU images, lacks those)
    gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
    scatter = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor
    g = dist.get_world_size(group)
    kv = torch.randn(n, *row)
    gathered = kv.new_empty((g * n, *row))
    grad_out = kv.new_empty((n, *row))
    samples = []
    for rep in range(repeats + 1):
        dist.barrier(group)
        t0 = time.perf_counter()
        gather(gathered, kv, group=group)
        scatter(grad_out, gathered, group=group)
        if rep:  # the first call warms up
            samples.append((time.perf_counter() - t0) * 1e3)
    worst = torch.tensor([statistics.median(samples)], dtype=torch.float64)
    dist.all_reduce(worst, op=dist.ReduceOp.MAX, group=group)
    return float(worst)


def sample_batches(path: str, scale: float, tokens: int, n: int = 3, seed: int = 0
                   ) -> list[tuple[int, ...]]:
    """``n`` micro-batches of at most ``tokens`` tokens from the length sample at ``path`` (times
    ``scale``), as the slots elastic CP regroups hold: one of the sample's longest 1% of
    documents, then the others in a seeded random order, each that still fits.

    Example: 99 documents of 100 tokens and one of 3,000, ``tokens`` = 4,000: every micro-batch
    is (3000, 100, ..., 100) with ten 100s (the 3,000 never fits twice).
    """
    import numpy as np

    from wlb.data.lengths import scaled_lengths

    lengths = scaled_lengths(path, tokens, scale)
    lengths = lengths[lengths <= tokens]
    rng = np.random.default_rng(seed)
    heavy = np.sort(lengths)[-max(1, len(lengths) // 100):]
    out = []
    for _ in range(n):
        mb = [int(rng.choice(heavy))]
        room = tokens - mb[0]
        for d in rng.permutation(lengths):
            if d <= room:
                mb.append(int(d))
                room -= int(d)
        out.append(tuple(mb))
    return out


def _time_split(lens: tuple[int, ...], heads: int, kv_heads: int, head_dim: int, repeats: int,
                group, strategy: str = "per_doc") -> tuple[float, float]:
    """Median ms (slowest rank) of one layer's attention forward + backward of a micro-batch of
    documents ``lens``: whole on every rank, then each rank's ``strategy`` shard of it (compute
    only, against K/V already gathered)."""
    import torch
    import torch.distributed as dist

    from wlb.cp import shard_indices
    from wlb.cp.layout import build_layout
    from wlb.cp.torch_kernel import attend_segments, attend_segments_backward

    g, rank = dist.get_world_size(group), dist.get_rank(group)
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(sum(lens), heads, head_dim, generator=gen)
    k, v = (torch.randn(sum(lens), kv_heads, head_dim, generator=gen) for _ in range(2))
    scale = head_dim ** -0.5
    out = []
    for n, r, how in ((1, 0, "per_seq"), (g, rank, strategy)):
        segments = build_layout(lens, n, r, how).segments
        ql = q[shard_indices(list(lens), n, r, how)] if n > 1 else q
        samples = []
        for rep in range(repeats + 1):
            dist.barrier(group)
            t0 = time.perf_counter()
            o = attend_segments(ql, k, v, segments, scale)
            attend_segments_backward(ql, k, v, segments, scale, torch.ones_like(o))
            if rep:  # the first call warms up
                samples.append((time.perf_counter() - t0) * 1e3)
        worst = torch.tensor([statistics.median(samples)], dtype=torch.float64)
        dist.all_reduce(worst, op=dist.ReduceOp.MAX, group=group)
        out.append(float(worst))
    return out[0], out[1]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cost-model", required=True,
                   help="calibrated cost-model JSON (tools/calibrate_cost_model.py); updated")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--tokens", default="512,1024,2048,4096,8192",
                   help="local token counts to time (comma-separated)")
    p.add_argument("--split-lengths", default=SPLIT_BATCHES,
                   help="micro-batches whose split efficiency to time: ';' between micro-batches, "
                   "',' between a micro-batch's document lengths")
    p.add_argument("--split-sample", default=None,
                   help="draw the micro-batches from this length sample instead (sample_batches)")
    p.add_argument("--split-scale", type=float, default=1.0,
                   help="multiply --split-sample's lengths by this")
    p.add_argument("--split-tokens", type=int, default=16384,
                   help="tokens of a --split-sample micro-batch (what a group of g ranks holds)")
    p.add_argument("--split-strategy", default="per_doc", choices=("per_doc", "mixed"),
                   help="how the group shards its micro-batch")
    a = p.parse_args(argv)
    with open(a.cost_model, encoding="utf-8") as f:
        data = json.load(f)
    ms_per_unit = (data.get("fit_ms") or {}).get("linear_ms_per_token")
    model = data.get("model") or {}
    if not ms_per_unit or not model.get("num_layers"):
        print(f"calibrate_comm: {a.cost_model} has no fit_ms.linear_ms_per_token or model "
              "entry; write it with tools/calibrate_cost_model.py first", file=sys.stderr)
        return 2
    if "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) < 2:
        print("calibrate_comm: run it under torchrun with >= 2 processes (see --help)",
              file=sys.stderr)
        return 2
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    g = dist.get_world_size()
    heads = model["num_attention_heads"]
    kv_heads = model.get("num_query_groups") or heads
    row = (kv_heads, 2 * model["hidden_size"] // heads)  # a token's K and V, fp32
    layers = model["num_layers"]
    xs, ys = [], []
    for n in (int(x) for x in a.tokens.split(",")):
        ms = layers * _time_layer(n, row, a.repeats, dist.group.WORLD)
        xs.append(n * (g - 1))
        ys.append(ms)
        if dist.get_rank() == 0:
            print(f"[calibrate_comm] {g} ranks, {n:6d} tokens each: {ms:8.2f} ms per "
                  f"micro-batch ({layers} layers)", flush=True)
    fixed_ms, coef_ms = fit_line(xs, ys)
    split = {"lengths": [], "whole_ms": [], "split_ms": [], "efficiency": []}
    batches = (sample_batches(a.split_sample, a.split_scale, a.split_tokens) if a.split_sample
               else [tuple(int(x) for x in mb.split(",")) for mb in a.split_lengths.split(";")])
    for d in batches:
        whole, part = _time_split(d, heads, kv_heads, model["hidden_size"] // heads, a.repeats,
                                  dist.group.WORLD, a.split_strategy)
        for key, value in zip(split, (list(d), whole, part, whole / (g * part))):
            split[key].append(value)
        if dist.get_rank() == 0:
            print(f"[calibrate_comm] attention of {len(d)} documents ({sum(d)} tokens, the longest "
                  f"{max(d)}): {whole:.1f} ms whole, "
                  f"{part:.1f} ms split over {g} ranks: efficiency {split['efficiency'][-1]:.3f}",
                  flush=True)
    measured = statistics.median(split["efficiency"])
    if dist.get_rank() == 0:
        data.update({SPLIT_KEY: min(measured, 1.0),
                     "elastic_split_fit": {**split, "ranks": g, "strategy": a.split_strategy}})
        data.update({KEYS[0]: coef_ms / ms_per_unit, KEYS[1]: fixed_ms / ms_per_unit,
                     "elastic_comm_fit_ms": {"per_token_received": coef_ms,
                                             "per_microbatch": fixed_ms, "ranks": g}})
        tmp = f"{a.cost_model}.tmp{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2)
        os.replace(tmp, a.cost_model)
        print(f"[calibrate_comm] {fixed_ms:.2f} ms + {coef_ms * 1e3:.3f} us per token received "
              f"-> {KEYS[0]} = {data[KEYS[0]]:.4g}, {KEYS[1]} = {data[KEYS[1]]:.4g} "
              f"(cost-model units); {SPLIT_KEY} = {data[SPLIT_KEY]:.3f} (measured "
              f"{measured:.3f}, at most 1 counts) in {a.cost_model}", flush=True)
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
