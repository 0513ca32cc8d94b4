#!/usr/bin/env python3
"""Would re-ordering the micro-batches of an iteration shorten megatron's pipeline schedule?

For each configuration of the paper's grid (assumed H100 profile, as ``simulate_cluster.py
grid``), packs ``--iters`` iterations with the stock and the WLB packer and simulates every DP
replica's 1F1B / interleaved schedule under several orders of its micro-batches:
``asc`` (lightest first), ``desc`` (heaviest first), ``mid`` (heaviest in the middle) and
``best`` (every permutation, replicas of at most 6 micro-batches; else the given order).
Prints the speed-up of each order over the packer's own order (iteration = slowest replica).

Example:
    python tools/sim_microbatch_order.py --iters 24
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from simulate_cluster import DEFAULT_LENGTHS, load_lengths  # noqa: E402

from wlb.config import WLBConfig  # noqa: E402
from wlb.cp.shard import ALL_STRATEGIES  # noqa: E402
from wlb.data.schedule import PlanSchedule, build_run_packer  # noqa: E402
from wlb.sim.cluster import fit_cost_model  # noqa: E402
from wlb.sim.hardware import h100  # noqa: E402
from wlb.sim.latency import choose_strategy, microbatch_times  # noqa: E402
from wlb.sim.model import MODELS, PAPER_GRID  # noqa: E402
from wlb.sim.pipeline import simulate_pipeline  # noqa: E402

ORDERS = ("given", "asc", "desc", "mid", "best")


def orders(totals: list[float]) -> dict[str, list[int] | None]:
    """Index orders of one replica's micro-batches (None: search every permutation)."""
    idx = list(range(len(totals)))
    asc = sorted(idx, key=lambda i: totals[i])
    return {"given": idx, "asc": asc, "desc": asc[::-1], "mid": asc[0::2] + asc[1::2][::-1],
            "best": None if len(idx) <= 6 else idx}


def run(model_name: str, context: int, layout, packing: str, iters: int, seed: int) -> dict:
    hw, model = h100(), MODELS[model_name]
    lengths = load_lengths(DEFAULT_LENGTHS, context, None)
    cost = fit_cost_model(model, layout, hw, int(1.25 * context))
    cfg = WLBConfig(packing=packing, outlier_thresholds="auto" if packing == "wlb" else "none")
    packer, _ = build_run_packer(cfg, lengths, layout.pp * layout.dp, context, cost, seed)
    schedule = PlanSchedule(lengths, packer, layout.dp, shuffle=True, seed=seed,
                            balance_dp=packing != "megatron")
    total = dict.fromkeys(ORDERS, 0.0)
    for _ in range(iters):
        plan = schedule.next_plan()
        replicas: list[list] = [[] for _ in range(layout.dp)]
        for mb, rank in zip(plan.microbatches, plan.dp_ranks):
            lens = [p.length for p in mb] or [2]
            s = (choose_strategy(lens, layout.cp, model, layout.tp, hw, ALL_STRATEGIES)
                 if packing == "wlb" else "per_seq")
            replicas[rank].append(microbatch_times(lens, s, model, layout, hw))
        worst = dict.fromkeys(ORDERS, 0.0)
        for mbs in replicas:
            def makespan(order, mbs=mbs):
                return simulate_pipeline([mbs[i].fwd for i in order], [mbs[i].bwd for i in order],
                                         layout.pp, layout.vpp, [mbs[i].p2p for i in order])[0]
            for name, order in orders([m.total for m in mbs]).items():
                t = (makespan(order) if order is not None else
                     min(makespan(list(p)) for p in itertools.permutations(range(len(mbs)))))
                worst[name] = max(worst[name], t)
        for name in ORDERS:
            total[name] += worst[name]
    return {name: total["given"] / total[name] for name in ORDERS}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--iters", type=int, default=24)
    p.add_argument("--seed", type=int, default=1234)
    a = p.parse_args(argv)
    print("| model | context | packing | " + " | ".join(ORDERS) + " |")
    print("|---" * (3 + len(ORDERS)) + "|")
    for (model, ctx), layout in PAPER_GRID.items():
        for packing in ("megatron", "wlb"):
            r = run(model, ctx, layout, packing, a.iters, a.seed)
            print(f"| {model} | {ctx // 1024}K | {packing} | "
                  + " | ".join(f"{r[o]:.3f}x" for o in ORDERS) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
