#!/usr/bin/env python3
"""Simulate packers on a document-length file and report balance, delay, speed and the ledger.

Example:
    python -m tools.simulate_packing --doc-lengths ../shared/data/doc_lengths_wlbllm.json \\
        --context-length 131072 --num-microbatches 4 --packer megatron,fixed-greedy,wlb --json

CPU only; needs numpy (highspy for --reference-gap, matplotlib for --plot), not torch.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from wlb.cost_model import CostModel, CostModelError
from wlb.data.lengths import read_lengths
from wlb.packing import available_packers, build_packer
from wlb.packing.run_packer import resolve_outliers
from wlb.packing.simulate import simulate
from wlb.packing.stream import DataError

KEYS = ("packer", "num_batches", "imbalance_mean", "imbalance_p50", "imbalance_p99",
        "imbalance_max", "delay_iters_mean", "delay_iters_max", "pack_ms_mean",
        "tokens_per_batch_mean", "docs_pending_at_end")


class UsageError(Exception):
    """Bad command-line input; printed as one line, exit status 2."""


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--doc-lengths", required=True, help="JSON list of document lengths")
    p.add_argument("--context-length", type=int, required=True, help="seq_length (tokens)")
    p.add_argument("--num-microbatches", type=int, required=True,
                   help="N: micro-batches balanced together (per iteration x DP)")
    p.add_argument("--max-tokens", type=int, default=None,
                   help="S_max for wlb packers (default 1.25 x context)")
    p.add_argument("--packer", default="wlb",
                   help=f"comma-separated, or 'all'; from {available_packers()}")
    p.add_argument("--num-batches", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shuffle", action="store_true", help="seeded document order (default: file)")
    p.add_argument("--attn-coef", type=float, default=None, help="W(d) = A*d^2 + B*d exactly")
    p.add_argument("--linear-coef", type=float, default=None)
    p.add_argument("--cost-model", default=None, help="calibration JSON instead of A/B")
    p.add_argument("--outlier-thresholds", default="auto",
                   help="'auto', 'none', or ascending comma-separated lengths")
    p.add_argument("--release", choices=("count", "match"), default="count",
                   help="wlb outlier release rule (wlb-paper always uses count)")
    p.add_argument("--delay-budget", type=float, default=0.5,
                   help="mean per-token delay allowed when auto-tuning thresholds")
    p.add_argument("--dp-size", type=int, default=1, help="DP ranks the micro-batches go to")
    p.add_argument("--flush", action="store_true", help="drain queues at the end (epoch end)")
    p.add_argument("--dump-plan", default=None, help="write one JSON line per global batch")
    p.add_argument("--json", action="store_true", help="one JSON object per packer")
    p.add_argument("--plot", default=None, help="PNG of per-batch imbalance")
    p.add_argument("--reference-gap", type=int, default=0, metavar="K",
                   help="also solve K small instances exactly (HiGHS MILP) and print the gap")
    return p.parse_args(argv)


def load_lengths(path: str) -> np.ndarray:
    try:
        return read_lengths(path, "--doc-lengths")
    except DataError as e:
        raise UsageError(str(e)) from None


def check_args(a: argparse.Namespace) -> None:
    if a.context_length <= 0:
        raise UsageError(f"--context-length must be > 0, got {a.context_length}")
    if a.num_microbatches <= 0:
        raise UsageError(f"--num-microbatches must be > 0, got {a.num_microbatches}")
    if a.max_tokens is not None and a.max_tokens < a.context_length:
        raise UsageError(f"--max-tokens {a.max_tokens} is below --context-length "
                         f"{a.context_length}")
    if a.num_batches <= 0:
        raise UsageError(f"--num-batches must be > 0, got {a.num_batches}")
    if a.dp_size <= 0 or a.num_microbatches % a.dp_size:
        raise UsageError(f"--dp-size {a.dp_size} does not divide --num-microbatches "
                         f"{a.num_microbatches}")
    if (a.attn_coef is None) != (a.linear_coef is None):
        raise UsageError("--attn-coef and --linear-coef must be given together")
    if a.cost_model and a.attn_coef is not None:
        raise UsageError("give --cost-model or --attn-coef/--linear-coef, not both")


def make_cost(a: argparse.Namespace) -> CostModel:
    try:
        if a.cost_model:
            return CostModel.from_json(a.cost_model)
        if a.attn_coef is not None:
            return CostModel(a.attn_coef, a.linear_coef)
    except CostModelError as e:
        raise UsageError(str(e)) from None
    return CostModel.default()


def packer_names(spec: str) -> list[str]:
    names = available_packers() if spec == "all" else [s for s in spec.split(",") if s]
    bad = [n for n in names if n not in available_packers()]
    if bad or not names:
        raise UsageError(f"--packer {spec!r}: unknown {bad}; choose from {available_packers()}")
    return names


def resolve_thresholds(a, lengths, cost) -> tuple[list[int], str, dict]:
    """Thresholds, where they came from, and tuned wlb options (max_wait, balance_tol)."""
    try:
        out = resolve_outliers(a.outlier_thresholds, lengths, num_microbatches=a.num_microbatches,
                               seq_length=a.context_length, cost_model=cost,
                               max_tokens=a.max_tokens, release=a.release,
                               delay_budget=a.delay_budget, seed=a.seed,
                               name="--outlier-thresholds")
    except ValueError as e:
        raise UsageError(f"--outlier-thresholds {a.outlier_thresholds!r}: {e}") from None
    tuned = {} if out.tuned is None else {"max_wait": out.tuned.max_wait,
                                          "balance_tol": out.tuned.balance_tol}
    return out.thresholds, out.source, tuned


def run(a: argparse.Namespace) -> list[dict]:
    check_args(a)
    lengths = load_lengths(a.doc_lengths)
    cost = make_cost(a)
    names = packer_names(a.packer)
    ths, how, tuned = [], "n/a", {}
    if any(n.startswith("wlb") for n in names):
        ths, how, tuned = resolve_thresholds(a, lengths, cost)
    results, series = [], {}
    dump = open(a.dump_plan, "w", encoding="utf-8") if a.dump_plan else None  # noqa: SIM115
    try:
        for name in names:
            kw = dict(num_microbatches=a.num_microbatches, seq_length=a.context_length,
                      cost_model=cost)
            if name.startswith("wlb"):
                kw.update(max_tokens=a.max_tokens, outlier_thresholds=ths)
                if name == "wlb":
                    kw.update(release=a.release, **tuned)
            packer = build_packer(name, **kw)

            def on_plan(plan, _name=name):
                if dump:
                    row = plan.to_json_dict()
                    if len(names) > 1:
                        row["packer"] = _name
                    dump.write(json.dumps(row, separators=(",", ":")) + "\n")

            res = simulate(lengths, packer, a.num_batches, shuffle=a.shuffle, seed=a.seed,
                           dp_size=a.dp_size, flush=a.flush, on_plan=on_plan)
            s = res.summary()
            s.update(context_length=a.context_length, num_microbatches=a.num_microbatches,
                     max_tokens=packer.max_tokens, cost_model=cost.to_dict())
            if name.startswith("wlb"):
                s.update(outlier_thresholds=ths, thresholds_source=how,
                         max_wait=getattr(packer, "max_wait", None))
            results.append(s)
            series[name] = res.imbalances
    finally:
        if dump:
            dump.close()
    if a.reference_gap:
        from wlb.packing.reference import optimality_gaps

        gap = optimality_gaps(lengths, cost, n=min(a.num_microbatches, 4),
                              instances=a.reference_gap, seed=a.seed)
        for s in results:
            s["reference_gap"] = gap
    if a.plot:
        plot(series, a)
    return results


def plot(series: dict, a) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4))
    for name, ys in series.items():
        ax.plot(ys, label=f"{name} (mean {np.mean(ys):.3f})", lw=0.9)
    ax.set_xlabel("global batch")
    ax.set_ylabel("imbalance (max x N / sum)")
    ax.set_title(f"{os.path.basename(a.doc_lengths)}: context {a.context_length}, "
                 f"N={a.num_microbatches}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(a.plot, dpi=110)


def print_table(results: list[dict]) -> None:
    head = f"{'packer':<14}{'batches':>8}{'imb mean':>10}{'p50':>8}{'p99':>8}{'max':>8}" \
           f"{'delay':>8}{'dmax':>6}{'ms/batch':>10}{'tok/batch':>11}{'pending':>9}"
    print(head)
    print("-" * len(head))
    for s in results:
        print(f"{s['packer']:<14}{s['num_batches']:>8}{s['imbalance_mean']:>10.4f}"
              f"{s['imbalance_p50']:>8.3f}{s['imbalance_p99']:>8.3f}{s['imbalance_max']:>8.3f}"
              f"{s['delay_iters_mean']:>8.3f}{s['delay_iters_max']:>6}{s['pack_ms_mean']:>10.3f}"
              f"{s['tokens_per_batch_mean']:>11.0f}{s['docs_pending_at_end']:>9}")
    for s in results:
        if "outlier_thresholds" in s:
            print(f"{s['packer']}: outlier thresholds {s['outlier_thresholds']} "
                  f"({s['thresholds_source']}), max_wait {s['max_wait']}, "
                  f"max_tokens {s['max_tokens']}")
    if results and results[0].get("data_exhausted"):
        print("note: the document file ended before --num-batches; the run stopped there")
    if results and "reference_gap" in results[0]:
        print("reference (HiGHS MILP) gap:", json.dumps(results[0]["reference_gap"]))
    print("ledger: every consumed token trained exactly once or pending (checked)")


def main(argv=None) -> int:
    a = parse_args(argv)
    try:
        results = run(a)
    except UsageError as e:
        print(f"simulate_packing.py: error: {e}", file=sys.stderr)
        return 2
    if a.json:
        for s in results:
            print(json.dumps(s))
    else:
        print_table(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
