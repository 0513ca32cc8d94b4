#!/usr/bin/env python3
"""Compare training runs from their logs: two arms, repeats, validation quality, a live run.

    python -m tools.compare_runs BASELINE.jsonl WLB.jsonl [--skip 1] [--json]
    python -m tools.compare_runs repeats baseline=b1.jsonl,b2.jsonl wlb=w1.jsonl,w2.jsonl [--json]
    python -m tools.compare_runs quality stock=a.jsonl wlb=b.jsonl --out DIR
    bash scripts/pretrain_gpt.sh ... 2>&1 | python -m tools.compare_runs follow --label WLB

* two ``--log-json`` runs (baseline vs WLB): losses side by side and the speed-ups. Time per
  iteration is compared as the *sum* over the compared iterations (a median would hide the
  iteration where delayed outliers land); tokens/s over the same window; the first ``--skip``
  iterations (start-up) are excluded.
* ``repeats``: repeated, interleaved runs of the same arms (``scripts/bench_cpu.sh REPEATS=N``
  runs repeat k of every arm back to back): each repeat's ratio, then their median and range,
  every later arm over every earlier one. The median is the figure to quote.
* ``quality``: validation loss against tokens trained, one row per evaluation, each run's final
  loss against the first run's; writes ``DIR/quality.md`` and a plot. The runs must have
  evaluated the same batches (the same ``valid_digest``).
* ``follow``: megatron's console output (stdin) as one short progress line per iteration with
  an ETA, and validation lines; everything else is left to the log file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from wlb.runlog import (
    ITER,
    VALID,
    cell,
    compare,
    eta_s,
    load,
    load_validation,
    plot_validation,
    repeats,
    validation_table,
)


def _row(r: dict | None) -> str:
    return f"{r['lm_loss']:13.5f} {r['iter_ms']:8.0f}" if r else " " * 22


def pair(a) -> int:
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


def _specs(specs: list[str]) -> dict[str, str]:
    out = {}
    for spec in specs:
        name, sep, files = spec.partition("=")
        if not sep or not files:
            raise SystemExit(f"compare_runs: {spec!r} is not NAME=FILE[,FILE...]")
        out[name] = files
    return out


def cmd_repeats(a) -> int:
    rows = repeats({k: v.split(",") for k, v in _specs(a.arms).items()}, a.skip)
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


def cmd_quality(a) -> int:
    runs = {}
    for name, path in _specs(a.runs).items():
        runs[name] = load_validation(path)
        if not runs[name]:
            raise SystemExit(f"compare_runs quality: {path} has no validation rows (run with "
                             "--split giving a valid part, and --eval-iters > 0)")
    os.makedirs(a.out, exist_ok=True)
    lines = ["# Validation loss vs tokens trained", "", *validation_table(runs), "",
             f"![validation loss]({plot_validation(runs, a.out)})"]
    with open(os.path.join(a.out, "quality.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines[2:-2]))
    print(f"[quality] {os.path.join(a.out, 'quality.md')}")
    return 0


def cmd_follow(a) -> int:
    times: list[float] = []
    for line in sys.stdin:
        m = ITER.search(line)
        if m:
            it, total, ms = int(m[1]), int(m[2]), float(m[3])
            times.append(ms)
            print(f"[{a.label}] iteration {it}/{total} | {ms / 1e3:.1f} s/iter | "
                  f"ETA {eta_s(it, total, times):.0f} s", flush=True)
            continue
        m = VALID.search(line)
        if m:
            print(f"[{a.label}] validation loss {float(m[2]):.4f} (iteration {m[1]})", flush=True)
    return 0


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd")
    two = sub.add_parser("pair", help="two runs: baseline vs WLB (the default)")
    two.add_argument("baseline")
    two.add_argument("wlb")
    rep = sub.add_parser("repeats", help="repeated runs of the same arms: median speed-ups")
    rep.add_argument("arms", nargs="+", help="NAME=run1.jsonl,run2.jsonl,... (in run order)")
    for q in (two, rep):
        q.add_argument("--skip", type=int, default=1, help="start-up iterations left out")
        q.add_argument("--json", action="store_true")
    qual = sub.add_parser("quality", help="validation loss against tokens trained")
    qual.add_argument("runs", nargs="+", help="NAME=LOG.jsonl (the first is the reference)")
    qual.add_argument("--out", required=True)
    fol = sub.add_parser("follow", help="megatron's console output (stdin) as progress lines")
    fol.add_argument("--label", required=True, help="the run's name in each line")
    if argv and argv[0] not in sub.choices and argv[0] not in ("-h", "--help"):
        argv = ["pair", *argv]
    a = p.parse_args(argv)
    if a.cmd is None:
        p.error("give two logs, or a command: repeats, quality, follow")
    return {"pair": pair, "repeats": cmd_repeats, "quality": cmd_quality,
            "follow": cmd_follow}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
