#!/usr/bin/env python3
"""Validation loss against tokens trained, for several runs on the same validation set.

    python -m tools.quality_report stock=a.jsonl wlb=b.jsonl wlb-delay=c.jsonl --out DIR

Prints (and writes ``DIR/quality.md``) one row per evaluation: the tokens each run had trained
and its validation loss, then each run's final loss against the first run's, in percent; plots
``DIR/valid_loss_vs_tokens.png``. The runs must have evaluated the same batches (same
``valid_digest``: the same --split, --eval-iters, --global-batch-size, --seq-length and data).
"""

from __future__ import annotations

import argparse
import os
import sys

from wlb.runlog import load_validation, plot_validation, validation_table


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("runs", nargs="+", help="NAME=LOG.jsonl (the first is the reference)")
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    runs = {}
    for spec in a.runs:
        name, _, path = spec.partition("=")
        if not path:
            p.error(f"{spec!r}: expected NAME=LOG.jsonl")
        runs[name] = load_validation(path)
        if not runs[name]:
            raise SystemExit(f"quality_report: {path} has no validation rows (run with --split "
                             "giving a valid part, and --eval-iters > 0)")
    os.makedirs(a.out, exist_ok=True)
    lines = ["# Validation loss vs tokens trained", "", *validation_table(runs), "",
             f"![validation loss]({plot_validation(runs, a.out)})"]
    with open(os.path.join(a.out, "quality.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines[2:-2]))
    print(f"[quality] {os.path.join(a.out, 'quality.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
