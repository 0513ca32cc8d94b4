#!/usr/bin/env python3
"""Would re-ordering the micro-batches of an iteration shorten megatron's pipeline schedule?

For each configuration of the paper's grid (assumed H100 profile, as ``simulate_cluster.py
grid``), packs ``--iters`` iterations as the Plain-4D and WLB systems of that grid do
(``wlb.sim.cluster.SYSTEMS``) and simulates every DP
replica's 1F1B / interleaved schedule under several orders of its micro-batches:
``asc`` (lightest first), ``desc`` (heaviest first), ``mid`` (heaviest in the middle) and
``best`` (every permutation, replicas of at most 6 micro-batches; else the given order).
Prints the speed-up of each order over the packer's own order (iteration = slowest replica).

Example:
    python -m tools.sim_microbatch_order --iters 24
"""

from __future__ import annotations

import argparse
import itertools
import sys

from wlb.data.lengths import DEFAULT_LENGTHS, scaled_lengths
from wlb.sim.cluster import (
    SYSTEMS,
    replica_times,
    system_chooser,
    system_schedule,
)
from wlb.sim.hardware import h100
from wlb.sim.model import MODELS, PAPER_GRID
from wlb.sim.pipeline import simulate_pipeline

ORDERS = ("given", "asc", "desc", "mid", "best")


def orders(totals: list[float]) -> dict[str, list[int] | None]:
    """Index orders of one replica's micro-batches (None: search every permutation)."""
    idx = list(range(len(totals)))
    asc = sorted(idx, key=lambda i: totals[i])
    return {"given": idx, "asc": asc, "desc": asc[::-1], "mid": asc[0::2] + asc[1::2][::-1],
            "best": None if len(idx) <= 6 else idx}


def run(model_name: str, context: int, layout, system: str, iters: int, seed: int) -> dict:
    """Speed-up of every order over the given one for ``system`` ("plain" or "wlb" of
    ``wlb.sim.cluster.SYSTEMS``), summed over ``iters`` iterations."""
    hw, model, sys_ = h100(), MODELS[model_name], SYSTEMS[system]
    lengths = scaled_lengths(DEFAULT_LENGTHS, context)
    schedule = system_schedule(sys_, model, layout, context, lengths, hw, seed=seed)
    chooser = system_chooser(sys_.cp, model, layout, hw)
    total = dict.fromkeys(ORDERS, 0.0)
    for _ in range(iters):
        worst = dict.fromkeys(ORDERS, 0.0)
        for mbs in replica_times(schedule.next_plan(), model, layout, hw, chooser):
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
    print("| model | context | system | " + " | ".join(ORDERS) + " |")
    print("|---" * (3 + len(ORDERS)) + "|")
    for (model, ctx), layout in PAPER_GRID.items():
        for system in ("plain", "wlb"):
            r = run(model, ctx, layout, system, a.iters, a.seed)
            print(f"| {model} | {ctx // 1024}K | {system} | "
                  + " | ".join(f"{r[o]:.3f}x" for o in ORDERS) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
