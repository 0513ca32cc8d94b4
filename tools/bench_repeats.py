#!/usr/bin/env python3
"""Speed-ups over repeated, interleaved runs of the same arms, as medians over the repeats.

Each repeat's ratio, then their median and range.

    python -m tools.bench_repeats baseline=b1.jsonl,b2.jsonl wlb=w1.jsonl,w2.jsonl \\
        elastic=e1.jsonl,e2.jsonl [--skip 1] [--json]

Repeat k of every arm ran back to back (``scripts/bench_cpu.sh REPEATS=N`` interleaves them),
so a ratio within one repeat compares runs under the same machine conditions; the median over
repeats is the figure to quote. Every later arm is compared with every earlier one.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

from wlb.runlog import compare

FIGURES = ("speedup_iter_time", "speedup_tokens_per_s")


def repeats(arms: dict[str, list[str]], skip: int = 1) -> list[dict]:
    """One row per pair of arms (later over earlier): per-repeat ratios and their median."""
    names = list(arms)
    n = {len(v) for v in arms.values()}
    if len(n) != 1:
        raise SystemExit(f"every arm needs the same number of repeats; got "
                         f"{ {k: len(v) for k, v in arms.items()} }")
    rows = []
    for i, ref in enumerate(names):
        for arm in names[i + 1:]:
            per = [compare(a, b, skip) for a, b in zip(arms[ref], arms[arm])]
            row = {"arm": arm, "over": ref, "repeats": len(per)}
            for f in FIGURES:
                xs = [p[f] for p in per]
                row[f] = {"median": statistics.median(xs), "min": min(xs), "max": max(xs),
                          "each": xs}
            rows.append(row)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("arms", nargs="+", help="NAME=run1.jsonl,run2.jsonl,... (in run order)")
    p.add_argument("--skip", type=int, default=1, help="start-up iterations left out")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    arms = {}
    for spec in a.arms:
        name, sep, files = spec.partition("=")
        if not sep or not files:
            raise SystemExit(f"bench_repeats: {spec!r} is not NAME=run1.jsonl,run2.jsonl")
        arms[name] = files.split(",")
    rows = repeats(arms, a.skip)
    if a.json:
        print(json.dumps(rows, indent=1))
        return 0
    for r in rows:
        it, tok = r["speedup_iter_time"], r["speedup_tokens_per_s"]
        each = ", ".join(f"{x:.3f}" for x in it["each"])
        print(f"{r['arm']} over {r['over']}: time per iteration {it['median']:.3f}x median of "
              f"{r['repeats']} ({each}); tokens/s {tok['median']:.3f}x "
              f"({tok['min']:.3f}-{tok['max']:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
