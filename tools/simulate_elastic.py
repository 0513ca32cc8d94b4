#!/usr/bin/env python3
"""Elastic CP, predicted: time per token against stock Megatron, WLB and megatron-core's planner.

Stock Megatron, WLB, WLB with elastic CP, and megatron-core's hybrid CP planner (cost model
only; no training):

    python -m tools.simulate_elastic --dp 2 --cp 1 --gbs 2 4 8

For every global-batch size: each system's predicted time per token over ``--iters``
iterations relative to stock Megatron's (WLB, elastic CP and megatron-core's planner run the
same WLB batches; stock Megatron its own, which need not hold as many tokens), and elastic CP's
fraction of the ideal (the iteration's work split perfectly over the DP x CP ranks and the
slots, plus the pipeline's warm-up). Every system's time is ``wlb.elastic.plan.plan_time``:
replicas run unsynchronised except where a group joins them. Stock and WLB run the fixed layout
(each replica's CP ranks run its micro-batches); elastic CP regroups each WLB slot over the pool
(``wlb.elastic.planner``); megatron-core's ``BalancedCPScheduler`` groups the WLB iteration's
documents as sub-samples, in as many micro-batch groups as it chooses (it runs without PP only),
each group lasting as long as its slowest rank.
"""

from __future__ import annotations

import argparse
import json
import sys

from wlb.cost_model import CostModel
from wlb.data.lengths import DEFAULT_LENGTHS, scaled_lengths
from wlb.elastic.plan import ElasticCost, fixed_slots, plan_time
from wlb.elastic.planner import plan_elastic
from wlb.packing import build_packer
from wlb.packing.base import default_max_tokens
from wlb.packing.schedule import PlanSchedule


def _hybrid_time(lengths: list[int], pool: int, rank_tokens: int, ec: ElasticCost) -> float:
    from wlb.megatron.hybrid_cp import hybrid_cp_groups

    total = 0.0
    for group in hybrid_cp_groups(lengths, pool, rank_tokens):
        width = {}
        for ids in group:
            for i in ids:
                width[i] = width.get(i, 0) + 1
        total += max((sum(ec.group_time([lengths[i]], width[i]) for i in ids)
                      for ids in group), default=0.0)
    return total


def run(lengths, *, dp: int, cp: int, gbs: int, seq: int, iters: int, ec: ElasticCost,
        pp: int, seed: int) -> dict:
    s_max = default_max_tokens(seq)
    cost = ec.cost
    stock = PlanSchedule(lengths, build_packer("megatron", num_microbatches=gbs, seq_length=seq,
                                               cost_model=cost), dp, shuffle=True, seed=seed,
                         balance_dp=False)
    wlb = PlanSchedule(lengths, build_packer("wlb", num_microbatches=gbs, seq_length=seq,
                                             cost_model=cost, max_tokens=s_max,
                                             outlier_thresholds=[]), dp, shuffle=True,
                       seed=seed, balance_dp=True)
    t = {"stock": 0.0, "wlb": 0.0, "elastic": 0.0, "ideal": 0.0, "hybrid": 0.0}
    tokens = {"stock": 0, "wlb": 0}
    for _ in range(iters):
        ps, pw = stock.next_plan(), wlb.next_plan()
        tokens["stock"] += ps.num_tokens
        tokens["wlb"] += pw.num_tokens
        t["stock"] += plan_time(fixed_slots(ps.microbatches, ps.dp_ranks, dp, cp), ec, pp)
        t["wlb"] += plan_time(fixed_slots(pw.microbatches, pw.dp_ranks, dp, cp), ec, pp)
        plan = plan_elastic(pw.microbatches, pw.dp_ranks, dp=dp, cp=cp,
                            rank_tokens=s_max // cp, ec=ec, pp=pp)
        t["elastic"] += plan_time(plan.slots, ec, pp)
        docs = [p.length for mb in pw.microbatches for p in mb]
        # perfectly balanced slots: each lasts work / (pool x M); the pipeline adds pp - 1
        m = gbs // dp
        t["ideal"] += sum(cost.doc_workload(d) for d in docs) / (dp * cp) * (m + pp - 1) / m
        if pp == 1:
            t["hybrid"] += _hybrid_time(docs, dp * cp, s_max // cp, ec)
    # per token: the two streams need not train as many tokens in ``iters`` iterations
    per_token = tokens["wlb"] / tokens["stock"]
    t["stock"] *= per_token  # (stock's time for WLB's tokens)
    out = {"gbs": gbs, "dp": dp, "cp": cp, "pp": pp,
           "wlb_over_stock": t["stock"] / t["wlb"],
           "elastic_over_stock": t["stock"] / t["elastic"],
           "ideal_over_stock": t["stock"] / t["ideal"],
           "elastic_over_wlb": t["wlb"] / t["elastic"],
           "ideal_over_wlb": t["wlb"] / t["ideal"],
           "elastic_fraction_of_ideal": t["ideal"] / t["elastic"]}
    out["hybrid_cp_over_stock"] = t["stock"] / t["hybrid"] if pp == 1 else None
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--lengths", default=DEFAULT_LENGTHS)
    p.add_argument("--scale", type=float, default=1 / 32)
    p.add_argument("--seq-length", type=int, default=8192)
    p.add_argument("--dp", type=int, default=2)
    p.add_argument("--cp", type=int, default=1)
    p.add_argument("--pp", type=int, default=1)
    p.add_argument("--gbs", type=int, nargs="+", default=[2, 4, 8])
    p.add_argument("--iters", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--attn-coef", type=float, default=0.0104)
    p.add_argument("--linear-coef", type=float, default=1.0)
    p.add_argument("--doc-coef", type=float, default=50.0)
    p.add_argument("--comm-coef", type=float, default=0.0,
                   help="K/V all-gather time per token gathered (0: free)")
    p.add_argument("--comm-fixed", type=float, default=0.0,
                   help="a group's collectives' time however few tokens (0: free)")
    p.add_argument("--split-efficiency", type=float, default=1.0,
                   help="how much of 1/g a split document's attention reaches (1: perfect)")
    p.add_argument("--json", action="store_true", help="one JSON object per GBS")
    a = p.parse_args(argv)
    lengths = scaled_lengths(a.lengths, a.seq_length, a.scale)
    try:
        ec = ElasticCost(CostModel(a.attn_coef, a.linear_coef, a.doc_coef), a.comm_coef,
                         a.comm_fixed, a.split_efficiency)
    except ValueError as e:
        p.error(str(e))
    rows = [run(lengths, dp=a.dp, cp=a.cp, gbs=g, seq=a.seq_length, iters=a.iters, ec=ec,
                pp=a.pp, seed=a.seed) for g in a.gbs]
    if a.json:
        for r in rows:
            print(json.dumps(r))
        return 0
    print(f"DP={a.dp} CP={a.cp} PP={a.pp}, seq {a.seq_length}, {a.lengths} x {a.scale:g}, "
          f"W = {a.attn_coef:g} d^2 + {a.linear_coef:g} d + {a.doc_coef:g}, comm "
          f"{a.comm_fixed:g} + {a.comm_coef:g} per token, split efficiency "
          f"{a.split_efficiency:g}, {a.iters} iterations (predicted, over "
          "stock Megatron)")
    print("| GBS | WLB | elastic | ideal | elastic / WLB | ideal / WLB | elastic, fraction of "
          "ideal | megatron hybrid CP |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        hyb = "n/a (PP > 1)" if r["hybrid_cp_over_stock"] is None else (
            f"{r['hybrid_cp_over_stock']:.3f}x")
        print(f"| {r['gbs']} | {r['wlb_over_stock']:.3f}x | {r['elastic_over_stock']:.3f}x | "
              f"{r['ideal_over_stock']:.3f}x | {r['elastic_over_wlb']:.3f}x | "
              f"{r['ideal_over_wlb']:.3f}x | {r['elastic_fraction_of_ideal']:.1%} | {hyb} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
