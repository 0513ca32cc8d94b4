#!/usr/bin/env python3
"""Measure CP attention balance under per_seq, per_doc and adaptive sharding (gloo, CPU).

Micro-batches: documents from a length file (file order, scaled by context/131072, at least 1
token) concatenated and cut at --context-length, as stock Megatron packs them. For each CP size
it spawns CP processes and, for every micro-batch and strategy, times each rank's attention
compute (forward + backward over its query segments) *one rank at a time* between barriers, so
that two cores shared by four processes do not distort the ratio. It reports:

* rank-time max/mean per micro-batch (mean over micro-batches),
* iteration-level attention time: sum over micro-batches of the slowest rank,
* the same predicted by the selector's kernel table, and the adaptive choice vs the oracle
  (the faster strategy per micro-batch, as measured),
* the wall time of the full cp_attention call (all-gather, compute, reduce-scatter) per strategy.

Example:
    python -m tools.bench_cp --cp-sizes 2,4 --num-microbatches 50
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from wlb.cp import PAPER_STRATEGIES, cp_attention, shard_indices
from wlb.cp.layout import build_layout
from wlb.cp.selector import DEFAULT_TABLE, KernelTable, choose_strategy, predict
from wlb.cp.strategy import ALL_STRATEGIES
from wlb.cp.torch_kernel import attend_segments, attend_segments_backward
from wlb.data.lengths import DEFAULT_LENGTHS


def make_microbatches(path: str, context: int, count: int, skip: int) -> list[list[int]]:
    with open(path, encoding="utf-8") as f:
        lengths = json.load(f)
    scale = context / 131072
    mbs, cur, room = [], [], context
    for d in lengths[skip:]:
        d = max(1, round(d * scale))
        while d > 0:
            take = min(d, room)
            cur.append(take)
            d -= take
            room -= take
            if room == 0:
                mbs.append(cur)
                if len(mbs) == count:
                    return mbs
                cur, room = [], context
    return mbs


def _time_compute(q, k_g, v_g, segs, scale, reps) -> float:
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        out = attend_segments(q, k_g, v_g, segs, scale)
        attend_segments_backward(q, k_g, v_g, segs, scale, torch.ones_like(out))
        best = min(best, time.perf_counter() - t0)
    return best


def worker(rank, world, port, mbs, a, out_path):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    group = dist.group.WORLD
    rows = []
    scale = a.head_dim**-0.5
    for n, lens in enumerate(mbs):
        g = torch.Generator().manual_seed(n)
        T = sum(lens)
        q = torch.randn(T, a.heads, a.head_dim, generator=g)
        k = torch.randn(T, a.kv_heads, a.head_dim, generator=g)
        v = torch.randn(T, a.kv_heads, a.head_dim, generator=g)
        row = {"doc_lens": lens}
        for s in a.strategies:
            layout = build_layout(tuple(lens), world, rank, s)
            idx = shard_indices(lens, world, rank, s)
            mine = 0.0
            for r in range(world):  # one rank at a time: no core contention
                dist.barrier()
                if r == rank:
                    mine = _time_compute(q[idx], k, v, layout.segments, scale, a.reps)
                dist.barrier()
            times = [None] * world
            dist.all_gather_object(times, mine, group=group)
            ql, kl, vl = (x[idx].clone().requires_grad_() for x in (q, k, v))
            dist.barrier()
            t0 = time.perf_counter()
            cp_attention(ql, kl, vl, lens, group, s).sum().backward()
            dist.barrier()
            row[s] = {"rank_s": times, "wall_s": time.perf_counter() - t0}
        rows.append(row)
    if rank == 0:
        with open(out_path, "w", encoding="utf-8") as f:
            json.dump(rows, f)
    dist.destroy_process_group()


def summarize(rows, cp, table, strategies=PAPER_STRATEGIES) -> dict:
    res = {"cp": cp, "num_microbatches": len(rows)}
    iter_t = {s: 0.0 for s in strategies}
    ratio = {s: 0.0 for s in strategies}
    wall = {s: 0.0 for s in strategies}
    pred = {s: 0.0 for s in strategies}
    adaptive = oracle = adaptive_pred = oracle_all = 0.0
    picks = {s: 0 for s in PAPER_STRATEGIES}
    agree = 0
    for row in rows:
        slowest = {}
        for s in strategies:
            t = row[s]["rank_s"]
            slowest[s] = max(t)
            iter_t[s] += max(t)
            ratio[s] += max(t) * len(t) / sum(t) / len(rows)
            wall[s] += row[s]["wall_s"]
            pred[s] += max(predict(row["doc_lens"], cp, s, table)) / 1e6
        choice, p = choose_strategy(row["doc_lens"], cp, table)
        picks[choice] += 1
        adaptive += slowest[choice]
        adaptive_pred += p[choice] / 1e6
        best = min(PAPER_STRATEGIES, key=lambda s: slowest[s])
        oracle += slowest[best]
        oracle_all += min(slowest.values())
        agree += best == choice
    for s in strategies:
        res[s] = {"rank_max_over_mean": ratio[s], "iter_attn_s": iter_t[s],
                  "predicted_s": pred[s], "full_call_wall_s": wall[s]}
    res["adaptive"] = {"iter_attn_s": adaptive, "predicted_s": adaptive_pred, "picks": picks,
                       "oracle_s": oracle, "gap_to_oracle": adaptive / oracle - 1,
                       "choice_matches_oracle": agree / len(rows)}
    if len(strategies) > len(PAPER_STRATEGIES):
        res["oracle_all_s"] = oracle_all  # per micro-batch best including "mixed"
        ad_all, picks_all = 0.0, {s: 0 for s in strategies}
        for row in rows:
            choice, _ = choose_strategy(row["doc_lens"], cp, table, strategies)
            picks_all[choice] += 1
            ad_all += max(row[choice]["rank_s"])
        res["adaptive_all"] = {"iter_attn_s": ad_all, "picks": picks_all,
                               "gap_to_oracle": ad_all / oracle_all - 1}
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--doc-lengths", default=DEFAULT_LENGTHS)
    p.add_argument("--context-length", type=int, default=4096)
    p.add_argument("--cp-sizes", default="2,4")
    p.add_argument("--num-microbatches", type=int, default=50)
    p.add_argument("--skip-docs", type=int, default=0, help="start this far into the file")
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv-heads", type=int, default=4)
    p.add_argument("--head-dim", type=int, default=64)
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--table", default=DEFAULT_TABLE)
    p.add_argument("--with-mixed", action="store_true",
                   help="also measure the 'mixed' strategy (long documents per-doc, runs of short "
                        "ones per-seq)")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    a.strategies = ALL_STRATEGIES if a.with_mixed else PAPER_STRATEGIES
    cps = [int(x) for x in a.cp_sizes.split(",")]
    for cp in cps:
        if cp < 2 or a.context_length < 2 * cp:
            print(f"bench_cp.py: error: CP={cp} needs cp >= 2 and context >= 2*CP", file=sys.stderr)
            return 2
    table = KernelTable.from_json(a.table)
    mbs = make_microbatches(a.doc_lengths, a.context_length, a.num_microbatches, a.skip_docs)
    from tests.helpers.dist import free_port

    results = []
    for cp in cps:
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "rows.json")
            mp.spawn(worker, args=(cp, free_port(), mbs, a, out), nprocs=cp, join=True)
            with open(out, encoding="utf-8") as f:
                rows = json.load(f)
        results.append(summarize(rows, cp, table, a.strategies))
    if a.json:
        for r in results:
            print(json.dumps(r))
        return 0
    print(f"{len(mbs)} micro-batches of {a.context_length} tokens, heads {a.heads}/{a.kv_heads}, "
          f"dim {a.head_dim}, table {os.path.basename(a.table)}")
    for r in results:
        print(f"\nCP={r['cp']}   {'rank max/mean':>14}{'iter attn s':>13}{'predicted s':>13}"
              f"{'full call s':>13}")
        for s in a.strategies:
            x = r[s]
            print(f"  {s:<9}{x['rank_max_over_mean']:>14.3f}{x['iter_attn_s']:>13.3f}"
                  f"{x['predicted_s']:>13.3f}{x['full_call_wall_s']:>13.3f}")
        ad = r["adaptive"]
        print(f"  adaptive {'':>14}{ad['iter_attn_s']:>13.3f}{ad['predicted_s']:>13.3f}   "
              f"picks {ad['picks']}")
        print(f"  oracle   {'':>14}{ad['oracle_s']:>13.3f}   adaptive vs oracle "
              f"{100 * ad['gap_to_oracle']:+.1f}%, same choice on "
              f"{100 * ad['choice_matches_oracle']:.0f}% of micro-batches")
        if "oracle_all_s" in r:
            aa = r["adaptive_all"]
            print(f"  adaptive incl. mixed {aa['iter_attn_s']:>13.3f}   picks {aa['picks']}")
            print(f"  oracle incl. mixed {'':>6}{r['oracle_all_s']:>11.3f}   adaptive incl. mixed "
                  f"vs this oracle {100 * aa['gap_to_oracle']:+.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
