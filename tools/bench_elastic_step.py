#!/usr/bin/env python3
"""One training step on one hand-made slot, fixed layout vs elastic CP: the whole model.

Run under torchrun with 2 processes (DP = 2). The slot is a heavy micro-batch (``--heavy``,
document lengths) on replica 0 and a light one (``--light``) on replica 1, made of the mock
corpus's longest documents (each cut to the length asked). It builds the run as
``pretrain_gpt_wlb.py`` would (the bench's model: 2 layers, hidden 64, 4 heads, seq-length
8192), trains ``--reps`` steps on that same plan and prints the median step time, with elastic
CP's groups and predicted speed-up when ``--elastic``. Compare the two runs' medians with
``tools/bench_elastic_slot.py`` (the attention layer alone) to see where the prediction goes.

    python -m torch.distributed.run --standalone --nproc_per_node 2 -m tools.bench_elastic_step \\
        --cost-model cost.json [--elastic] [--sharding per-doc]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings

HEAVY = "3800,1200,800,500,300,200,150,100,100,50"
LIGHT = ",".join(["600,500,400"] * 6 + ["100"] * 5)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--cost-model", required=True, help="calibrated cost-model JSON")
    p.add_argument("--elastic", action="store_true", help="train with --wlb-elastic-cp")
    p.add_argument("--sharding", default="adaptive", help="--wlb-cp-sharding of the groups")
    p.add_argument("--heavy", default=HEAVY)
    p.add_argument("--light", default=LIGHT)
    p.add_argument("--reps", type=int, default=12)
    a = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    import torch.distributed as dist

    from wlb.packing.types import BatchPlan, Piece
    from wlb.training.arguments import parse
    from wlb.training.loop import train_step
    from wlb.training.setup import build

    flags = ["--mock-data", "--mock-num-docs", "6000", "--mock-length-scale", "0.03125",
             "--seq-length", "8192", "--global-batch-size", "2", "--num-layers", "2",
             "--hidden-size", "64", "--num-attention-heads", "4", "--train-iters", "100",
             "--lr-decay-iters", "1000", "--wlb-packing", "wlb", "--wlb-cp-sharding", a.sharding,
             "--wlb-outlier-thresholds", "none", "--wlb-cost-model", a.cost_model]
    run = build(parse(flags + (["--wlb-elastic-cp"] if a.elastic else [])))
    lengths = run.schedule.batcher.lengths
    longest = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    used: set[int] = set()

    def pieces(spec: str) -> list:
        out = []
        for d in (int(x) for x in spec.split(",")):
            doc = next((i for i in longest if i not in used and lengths[i] >= d), None)
            if doc is None:
                raise SystemExit(f"bench_elastic_step: no unused mock document of >= {d} tokens")
            used.add(doc)
            out.append(Piece(doc, 0, d, 0))
        return out

    plan = BatchPlan(0, [pieces(a.heavy), pieces(a.light)], [0, 1])
    times, m = [], {}
    for _ in range(a.reps + 1):
        t0 = time.perf_counter()
        m = train_step(run, plan)
        times.append((time.perf_counter() - t0) * 1e3)
    if dist.get_rank() == 0:
        arm = f"elastic ({a.sharding})" if a.elastic else "fixed"
        extra = (f"; groups {m['elastic_group_sizes']}, predicted {m['elastic_speedup_pred']:.3f}x"
                 if a.elastic else "")
        print(f"[bench_elastic_step] {arm}: median step {statistics.median(times[1:]):.1f} ms "
              f"over {a.reps} steps{extra}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
