#!/usr/bin/env python3
"""Compare two --log-json runs (baseline vs WLB): iteration-time ratio and losses side by side.

    python -m tools.compare_runs BASELINE.jsonl WLB.jsonl [--skip 1] [--json]

Time per iteration is compared as the *sum* over the compared iterations (a median would hide the
iteration where delayed outliers land); tokens/s over the same window; the first ``--skip``
iterations (start-up) are excluded.
"""

from __future__ import annotations

import argparse
import json
import sys

from wlb.runlog import cell, compare, load


def _row(r: dict | None) -> str:
    return f"{r['lm_loss']:13.5f} {r['iter_ms']:8.0f}" if r else " " * 22


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("baseline")
    p.add_argument("wlb")
    p.add_argument("--skip", type=int, default=1, help="start-up iterations left out")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    base, wlb = load(a.baseline), load(a.wlb)
    out = compare(a.baseline, a.wlb, a.skip)
    sb, sw = out["baseline"], out["wlb"]
    if a.json:
        print(json.dumps(out, indent=1))
        return 0
    print(f"{'iter':>5} | {'baseline loss':>13} {'ms':>8} | {'wlb loss':>13} {'ms':>8}")
    for i in range(max(len(base), len(wlb))):
        b = base[i] if i < len(base) else None
        w = wlb[i] if i < len(wlb) else None
        print(f"{i + 1:5d} | {_row(b)} | {_row(w)}")
    print()
    for k in ("iter_ms_mean", "tokens_per_s", "work_per_s", "pp_imbalance_pred",
              "pp_imbalance_floor", "pp_imbalance_measured", "dp_imbalance_pred",
              "cp_imbalance_pred", "final_loss", "pending_tokens_at_end"):
        print(f"{k:>22}: baseline {cell('.4f', sb[k]):>12}   wlb {cell('.4f', sw[k]):>12}")
    print(f"\nWLB speed-up, time per iteration: {out['speedup_iter_time']:.3f}x; "
          f"tokens/s: {out['speedup_tokens_per_s']:.3f}x; cost-model work/s: "
          f"{out['speedup_work_per_s']:.3f}x  (iterations {a.skip + 1}.., "
          f"{sb['iterations']} vs {sw['iterations']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
