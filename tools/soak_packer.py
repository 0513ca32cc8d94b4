#!/usr/bin/env python3
"""Soak the packer alone: 10^5 global batches from a long-tailed distribution.

Reports, per window of batches, the mean imbalance, the pieces held in the outlier queues and
carry-over (max over the window), the documents in flight and the process RSS, so one can see
that memory stays bounded and balance stays stable. Every document is checked to be trained
exactly once per epoch (never more than its length; none left half-trained with nothing held).

    python -m tools.soak_packer --num-batches 100000 --num-microbatches 8
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

import numpy as np

from wlb.cost_model import CostModel
from wlb.data.lengths import DEFAULT_LENGTHS, read_lengths
from wlb.metrics import imbalance
from wlb.packing import DataError, build_packer
from wlb.packing.run_packer import resolve_outliers
from wlb.packing.schedule import PlanSchedule
from wlb.packing.types import microbatch_workloads


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--doc-lengths", default=DEFAULT_LENGTHS)
    p.add_argument("--num-batches", type=int, default=100_000)
    p.add_argument("--num-microbatches", type=int, default=8)
    p.add_argument("--context-length", type=int, default=131072)
    p.add_argument("--packer", default="wlb")
    p.add_argument("--outlier-thresholds", default="65536,98304",
                   help="'auto', 'none', or ascending comma-separated lengths")
    p.add_argument("--windows", type=int, default=10)
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    if a.num_batches <= 0 or a.windows <= 0:
        print("soak_packer: --num-batches and --windows must be > 0", file=sys.stderr)
        return 2
    try:
        lengths = read_lengths(a.doc_lengths)
    except DataError as e:
        print(f"soak_packer: {e}", file=sys.stderr)
        return 2
    cost = CostModel.default()
    kw = {}
    if a.packer.startswith("wlb"):
        try:
            kw["outlier_thresholds"] = resolve_outliers(
                a.outlier_thresholds, lengths, num_microbatches=a.num_microbatches,
                seq_length=a.context_length, cost_model=cost, max_tokens=None, release="count",
                delay_budget=0.5, seed=0, name="--outlier-thresholds").thresholds
        except ValueError as e:
            print(f"soak_packer: {e}", file=sys.stderr)
            return 2
    packer = build_packer(a.packer, num_microbatches=a.num_microbatches,
                          seq_length=a.context_length, cost_model=cost, **kw)
    # PlanSchedule tracks each consumed piece's epoch until it is trained (as in training)
    schedule = PlanSchedule(lengths, packer, 1, shuffle=True, seed=0, balance_dp=False)
    batcher = schedule.batcher
    per_window = max(1, a.num_batches // a.windows)
    rows, imbs, held_max, t0 = [], [], 0, time.perf_counter()
    # Exactly-once check with bounded memory: tokens trained per (epoch, doc) in flight; a document
    # leaves the table when all its tokens are trained; more than its length raises at once.
    inflight: dict[tuple[int, int], int] = {}
    retired: dict[int, int] = {}  # epoch -> documents fully trained
    for step in range(a.num_batches):
        plan = schedule.next_plan()
        for mb in schedule.last_trained:
            for ep, doc, _, length in mb:
                k = (ep, doc)
                n = inflight.get(k, 0) + length
                if n > lengths[doc]:
                    raise SystemExit(f"soak_packer: document {k} trained {n} > "
                                     f"{lengths[doc]} tokens")
                if n == lengths[doc]:
                    inflight.pop(k, None)
                    retired[ep] = retired.get(ep, 0) + 1
                else:
                    inflight[k] = n
        imbs.append(imbalance(microbatch_workloads(plan.microbatches, packer.cost)))
        held_max = max(held_max, len(packer.pending()))
        if (step + 1) % per_window == 0:
            rows.append({"batches": step + 1, "imbalance_mean": float(np.mean(imbs)),
                         "held_pieces_max": held_max, "inflight_docs": len(inflight),
                         "rss_mb": rss_mb(),
                         "s": time.perf_counter() - t0})
            imbs, held_max = [], 0
    # every document of a finished epoch is fully trained unless a piece of it is still held
    held = {(ep, doc) for ep, doc, _, _ in schedule.pending_with_epochs()}
    stale = [k for k in inflight if k[0] < batcher.epoch - 1 and k not in held]
    if stale:
        raise SystemExit(f"soak_packer: documents lost (partly trained, nothing held): {stale[:5]}")
    for ep in range(batcher.epoch - 1):  # epochs consumed completely long ago
        n_held = len({d for e, d in held if e == ep} | {d for e, d in inflight if e == ep})
        if retired.get(ep, 0) + n_held != len(lengths):
            raise SystemExit(f"soak_packer: epoch {ep}: {retired.get(ep, 0)} documents trained "
                             f"+ {n_held} held != {len(lengths)}")
    summary = {"docs_fully_trained": sum(retired.values()), "docs_in_flight": len(inflight),
               "pieces_held": len(packer.pending()), "epochs": batcher.epoch + 1}
    if a.json:
        print(json.dumps({"windows": rows, "ledger": summary}, indent=1))
        return 0
    print(f"{'batches':>8} {'imbalance':>10} {'held pieces (max)':>18} {'docs in flight':>15} "
          f"{'RSS MB':>8} {'s':>7}")
    for r in rows:
        print(f"{r['batches']:8d} {r['imbalance_mean']:10.4f} {r['held_pieces_max']:18d} "
              f"{r['inflight_docs']:15d} {r['rss_mb']:8.1f} {r['s']:7.1f}")
    print(f"exactly-once check ok: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
