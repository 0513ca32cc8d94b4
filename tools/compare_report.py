#!/usr/bin/env python3
"""Write a baseline-vs-WLB report folder from two --log-json runs: summary.md + PNG plots.

    python -m tools.compare_report BASELINE.jsonl WLB.jsonl --out reports/compare [--skip 1]

Plots: iteration time per step, imbalance (predicted and measured) per step, loss curves, and the
per-micro-batch predicted workload of every iteration (sorted, baseline vs WLB).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from wlb.runlog import (
    cell,
    compare,
    load,
    load_validation,
    plot_microbatch_work,
    plot_validation,
    validation_table,
)


def _plots(base: list[dict], wlb: list[dict], out: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []

    def series(ax, key, label_suffix="", style="-"):
        for rows, name, color in ((base, "baseline", "tab:blue"), (wlb, "WLB", "tab:orange")):
            rows = [r for r in rows if key in r]  # predictions: logged iterations only
            ax.plot([r["iteration"] for r in rows], [r[key] for r in rows], style, color=color,
                    label=f"{name}{label_suffix}")

    specs = [
        ("iter_time.png", "iteration time (ms)", lambda ax: series(ax, "iter_ms")),
        ("loss.png", "lm loss", lambda ax: series(ax, "lm_loss")),
        ("imbalance.png", "micro-batch imbalance (max x N / sum)", lambda ax: (
            series(ax, "pp_imbalance_pred", " predicted", "--"),
            series(ax, "pp_imbalance_measured", " measured"))),
    ]
    for fname, ylabel, draw in specs:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        draw(ax)
        ax.set_xlabel("iteration")
        ax.set_ylabel(ylabel)
        ax.legend()
        fig.tight_layout()
        fig.savefig(os.path.join(out, fname), dpi=110)
        plt.close(fig)
        made.append(fname)
    if plot_microbatch_work({"baseline": base, "WLB": wlb},
                            os.path.join(out, "microbatch_work.png")):
        made.append("microbatch_work.png")
    return made


def _notes(sb: dict, sw: dict, nproc: int | None) -> list[str]:
    """Plain-language reasons, from the figures, when WLB's balance cannot show as speed."""
    notes = []
    cores = _cores()
    if nproc and nproc > cores:
        notes.append(
            f"**{nproc} processes shared {cores} CPU cores.** Ranks take turns on the cores, so "
            "a rank waiting for a slower one can leave its core to another, and imbalance costs "
            "less time than on dedicated devices. The iteration time then tends to follow the "
            "total work of all ranks, which balancing does not reduce. With one core per rank "
            "(e.g. `CP=2 PP=1 DP=1` on 2 cores) or on GPUs, balance turns into time.")
    extra = (sw["work_per_s"] / sw["tokens_per_s"]) / (sb["work_per_s"] / sb["tokens_per_s"]) - 1
    if extra > 0.05:
        notes.append(
            f"**WLB trained {extra:.0%} more cost-model work per token.** Megatron cuts documents "
            "at seq-length and starts each piece afresh, so its attention spans are shorter; WLB "
            "keeps documents whole (up to 1.25 x seq-length). Where attention dominates the cost "
            "(on a CPU it is far costlier relative to the rest than on a GPU), that is a heavier "
            "training task per token: compare cost-model work/s, not tokens/s.")
    if sw["pp_imbalance_pred"] >= sb["pp_imbalance_pred"]:
        notes.append(
            f"**WLB's micro-batch imbalance is not lower here** (predicted "
            f"{sw['pp_imbalance_pred']:.2f} vs {sb['pp_imbalance_pred']:.2f}). With outlier "
            "delay off, an iteration that holds a document far costlier than the rest cannot be "
            "balanced by any packing, and whole documents (above) make the costliest micro-batch "
            "costlier still. `WLB_THRESHOLDS=auto` delays such outliers (queues) until one can "
            "go to every micro-batch.")
    return [x for n in notes for x in (n, "")]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("baseline")
    p.add_argument("wlb")
    p.add_argument("--out", required=True)
    p.add_argument("--skip", type=int, default=1, help="start-up iterations left out")
    p.add_argument("--title", default="baseline (stock Megatron) vs WLB")
    p.add_argument("--layout", default="layout", help="the layout's name in results.json")
    p.add_argument("--setting", default="", help="one phrase for results.json: model, data")
    p.add_argument("--nproc", type=int, default=None,
                   help="processes per run; the report warns when they outnumber the CPU cores")
    a = p.parse_args(argv)
    base, wlb = load(a.baseline), load(a.wlb)
    figures = compare(a.baseline, a.wlb, a.skip)  # each arm's summary and the speed-ups
    sb, sw = figures["baseline"], figures["wlb"]
    os.makedirs(a.out, exist_ok=True)
    plots = _plots(base, wlb, a.out)
    rows = [
        ("iteration time, mean (ms)", "iter_ms_mean", ".1f"),
        ("tokens/s", "tokens_per_s", ".0f"),
        ("cost-model work/s", "work_per_s", ".0f"),
        ("micro-batch imbalance, predicted", "pp_imbalance_pred", ".3f"),
        ("micro-batch imbalance, floor for the same pieces", "pp_imbalance_floor", ".3f"),
        ("micro-batch imbalance, measured", "pp_imbalance_measured", ".3f"),
        ("DP replica imbalance, predicted", "dp_imbalance_pred", ".3f"),
        ("CP imbalance, predicted", "cp_imbalance_pred", ".3f"),
        ("loss at the end", "final_loss", ".4f"),
        ("tokens held in queues at the end", "pending_tokens_at_end", ".0f"),
    ]
    diffs = [abs(x["lm_loss"] - y["lm_loss"]) for x, y in zip(base, wlb)]
    n = min(len(base), len(wlb))
    verdict = _verdict(figures, diffs)
    cores = _cores()
    lines = []
    if a.nproc and a.nproc > cores:  # said first: it changes how every figure below reads
        lines += [f"**{a.nproc} processes shared {cores} CPU cores: read the times below as "
                  "total work, not balance (see the notes).**", ""]
    lines += [f"# {a.title}", ""]
    lines += [f"- {v}" for v in verdict] + [""]
    lines += [f"![{plots[0]}]({plots[0]})", ""]
    lines += [f"Iterations {a.skip + 1}..{len(base)} (baseline) and {a.skip + 1}..{len(wlb)} "
              "(WLB); times are sums over the window.", "",
              "| metric | baseline | WLB |", "|---|---|---|"]
    lines += [f"| {name} | {cell(spec, sb[k])} | {cell(spec, sw[k])} |" for name, k, spec in rows]

    def consumed(log):  # tokens read from the stream: trained, plus queued at the end
        return sum(r["tokens"] for r in log[:n]) + log[n - 1].get("pending_tokens", 0)

    lag = 1.0 - consumed(wlb) / max(consumed(base), 1)
    lines += ["", f"WLB speed-up per iteration: {figures['speedup_iter_time']:.3f}x; tokens/s "
              f"{figures['speedup_tokens_per_s']:.3f}x; cost-model work/s "
              f"{figures['speedup_work_per_s']:.3f}x.", "",
              f"Loss per iteration, |baseline - WLB|: mean {sum(diffs) / len(diffs):.4f}, max "
              f"{max(diffs):.4f} over {len(diffs)} iterations. " + _same_data(lag), "",
              f"Logs: `{a.baseline}`, `{a.wlb}`.", ""]
    lines += _notes(sb, sw, a.nproc)
    vb, vw = load_validation(a.baseline), load_validation(a.wlb)
    if vb and vw:  # the same model? validation loss on identical held-out batches
        runs = {"baseline": vb, "WLB": vw}
        lines += ["## Validation loss vs tokens trained", "", *validation_table(runs), ""]
        plots.append(plot_validation(runs, a.out))
    lines += [f"![{p_}]({p_})" for p_ in plots[1:]]
    summary = os.path.join(a.out, "summary.md")
    with open(summary, "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(a.out, "results.json"), "w") as f:  # tools/bench_results.py reads it
        json.dump({"setting": a.setting, "layouts": {a.layout: figures}}, f, indent=1)
    print("\n".join(verdict))
    print(f"report: {summary}")
    return 0


def _same_data(lag: float) -> str:
    """Whether the two runs trained the same tokens, from the tokens each consumed."""
    if abs(lag) < 1e-9:  # --wlb-global-batch megatron: the baseline's global batches, repacked
        return ("Both runs consumed the same tokens in every iteration (WLB repacked stock "
                "Megatron's global batches), so the losses differ only by summation order.")
    return ("WLB packed its own document stream (`--wlb-global-batch documents`): its global "
            "batches end at a document boundary, not at exactly N x seq-length tokens (it "
            f"consumed {100 * lag:.1f}% fewer tokens), and hold other documents than Megatron's "
            "shuffled samples, so the two loss curves drift apart. `--wlb-global-batch megatron` "
            "repacks Megatron's own global batches instead.")


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _verdict(f: dict, diffs: list[float]) -> list[str]:
    """Three lines: speed-up per iteration, imbalance before/after, loss difference."""
    b, w = f["baseline"], f["wlb"]
    loss = (f"validation loss {f['valid_loss']['baseline']:.4f} (stock) vs "
            f"{f['valid_loss']['wlb']:.4f} (WLB), "
            f"{f['valid_loss']['wlb'] / f['valid_loss']['baseline'] - 1:+.2%}"
            if "valid_loss" in f else f"training loss at the end {b['final_loss']:.4f} (stock) "
            f"vs {w['final_loss']:.4f} (WLB)")
    return [f"WLB is {f['speedup_iter_time']:.3f}x faster per iteration than stock Megatron "
            f"({b['iter_ms_mean']:.0f} -> {w['iter_ms_mean']:.0f} ms)",
            f"imbalance (predicted, max x N / sum): micro-batches {b['pp_imbalance_pred']:.2f} -> "
            f"{w['pp_imbalance_pred']:.2f}, CP ranks {b['cp_imbalance_pred']:.3f} -> "
            f"{w['cp_imbalance_pred']:.3f}",
            f"{loss}; training loss differs by {sum(diffs) / len(diffs):.4f} per iteration "
            "on average"]


if __name__ == "__main__":
    sys.exit(main())
