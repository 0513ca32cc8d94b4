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

from wlb.training.runlog import load_validation


def quality_lines(runs: dict[str, list[dict]]) -> list[str]:
    """Markdown table of the validation rows of ``runs`` (name -> rows), and the final gaps."""
    names = list(runs)
    digests = {r["valid_digest"] for rows in runs.values() for r in rows}
    if len(digests) > 1:
        raise SystemExit(f"quality_report: the runs evaluated different batches "
                         f"(valid_digest {sorted(digests)}); same --split, --eval-iters, "
                         "--global-batch-size, --seq-length and data?")
    n = min(len(rows) for rows in runs.values())
    head = " | ".join(f"{k}: tokens | {k}: valid loss" for k in names)
    lines = [f"| iteration | {head} |", "|---" * (1 + 2 * len(names)) + "|"]
    for i in range(n):
        cells = " | ".join(f"{runs[k][i]['tokens_trained']} | {runs[k][i]['valid_lm_loss']:.4f}"
                           for k in names)
        lines.append(f"| {runs[names[0]][i]['iteration']} | {cells} |")
    ref = runs[names[0]][n - 1]["valid_lm_loss"]
    lines.append("")
    for k in names[1:]:
        last = runs[k][n - 1]["valid_lm_loss"]
        lines.append(f"- final validation loss, {k} vs {names[0]}: {last:.4f} vs {ref:.4f} "
                     f"({100 * (last - ref) / ref:+.2f}%)")
    return lines


def plot(runs: dict[str, list[dict]], out: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for k, rows in runs.items():
        ax.plot([r["tokens_trained"] for r in rows], [r["valid_lm_loss"] for r in rows],
                marker="o", label=k)
    ax.set_xlabel("tokens trained")
    ax.set_ylabel("validation loss")
    ax.legend()
    fig.tight_layout()
    name = "valid_loss_vs_tokens.png"
    fig.savefig(os.path.join(out, name), dpi=110)
    plt.close(fig)
    return name


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
    lines = ["# Validation loss vs tokens trained", "", *quality_lines(runs), "",
             f"![validation loss]({plot(runs, a.out)})"]
    with open(os.path.join(a.out, "quality.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines[2:-2]))
    print(f"[quality] {os.path.join(a.out, 'quality.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
