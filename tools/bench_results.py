#!/usr/bin/env python3
"""Publish benchmark figures: record a run's JSON with its machine and commit, render the tables.

    python -m tools.bench_results publish NAME FIGURES.json --command "bash scripts/bench_cpu.sh"
    python -m tools.bench_results collect OUT.json cp2=BASE.jsonl,WLB.jsonl ... [--plots PREFIX]
    python -m tools.bench_results render [--check]

``publish`` writes ``docs/results/NAME.json`` (the figures plus date, machine, commit and command)
and re-renders. ``render`` rewrites every block ``<!-- results:NAME -->...<!-- /results:NAME -->``
in README.md and docs/*.md from those files; ``--check`` only says whether a block is stale
(exit 1), as the tests do. NAME is one of: bench_cpu and quickstart (``tools.compare_runs
--json`` figures per layout), packing (``scripts/bench_packing.sh``), sim_grid
(``tools.simulate_cluster grid --json``), host_path (``scripts/bench_host.sh``). Nothing here is
typed in by hand.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import platform
import re
import shutil
import subprocess
import sys

from wlb.runlog import cell, compare, load, plot_microbatch_work, summarize
from wlb.sim.model import PAPER_SPEEDUP

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BLOCK = re.compile(r"(<!-- results:(\w+) -->\n)(.*?)(<!-- /results:\2 -->)", re.S)


def machine() -> str:
    """One line naming this machine: CPU model, usable cores, and whether a GPU is visible."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cpu}, {cores} cores, no GPU used"


def commit() -> str:
    try:
        out = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return out + ("+changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _provenance(rec: dict) -> str:
    return (f"Measured {rec['date']} on {rec['machine']}, commit `{rec['commit']}`: "
            f"`{rec['command']}`.")


def _x(v: float) -> str:
    return f"{v:.3f}×"


def render_layouts(rec: dict) -> list[str]:
    """bench_cpu / quickstart: one row per layout, baseline vs WLB."""
    lines = ["| layout | ms/iter, stock → WLB | **speed-up per iteration** | tokens/s | "
             "cost-model work/s | micro-batch imbalance (pred.) | DP imbalance (pred.) | "
             "CP imbalance (pred.) | valid loss, stock / WLB |", "|---" * 9 + "|"]
    for name, f in rec["figures"]["layouts"].items():
        b, w = f["baseline"], f["wlb"]
        valid = f.get("valid_loss") or {}
        vl = (f"{valid['baseline']:.4f} / {valid['wlb']:.4f}" if valid else "n/a")
        lines.append(
            f"| {name} | {b['iter_ms_mean']:.0f} → {w['iter_ms_mean']:.0f} | "
            f"**{_x(f['speedup_iter_time'])}** | {_x(f['speedup_tokens_per_s'])} | "
            f"{_x(f['speedup_work_per_s'])} | {b['pp_imbalance_pred']:.2f} → "
            f"{w['pp_imbalance_pred']:.2f} | {cell('.2f', b['dp_imbalance_pred'])} → "
            f"{cell('.2f', w['dp_imbalance_pred'])} | {b['cp_imbalance_pred']:.3f} → "
            f"{w['cp_imbalance_pred']:.3f} | {vl} |")
    return lines


def render_packing(rec: dict) -> list[str]:
    runs = rec["figures"]["runs"]
    names = [p["packer"] for p in runs[0]["packers"]]
    lines = ["| data | N | batches | " + " | ".join(f"{n} imbalance (delay)" for n in names)
             + " | wlb ms/batch |", "|---" * (len(names) + 4) + "|"]
    for r in runs:
        cells = [f"{p['imbalance_mean']:.3f} ({p['delay_iters_mean']:.2f})" for p in r["packers"]]
        wlb = next(p for p in r["packers"] if p["packer"] == "wlb")
        lines.append(f"| {r['data']} | {r['num_microbatches']} | {wlb['num_batches']} | "
                     + " | ".join(cells) + f" | {wlb['pack_ms_mean']:.2f} |")
    return lines


def render_sim_grid(rec: dict) -> list[str]:
    rows = rec["figures"]["results"]
    lines = ["| model | context | layout | GPUs | Plain-4D s/iter | Fixed-4D | WLB | "
             "PP imbalance plain → WLB | CP imbalance plain → WLB |", "|---" * 9 + "|"]
    for r in rows:
        s = r["systems"]
        lines.append(
            f"| {r['model']} | {r['context'] // 1024}K | {r['layout']} | {r['gpus']} | "
            f"{s['plain']['iter_s_mean']:.3f} | {_x(s['fixed']['speedup'])} | "
            f"{_x(s['wlb']['speedup'])} | {s['plain']['pp_imbalance_mean']:.2f} → "
            f"{s['wlb']['pp_imbalance_mean']:.2f} | {s['plain']['cp_imbalance_mean']:.3f} → "
            f"{s['wlb']['cp_imbalance_mean']:.3f} |")
    lines += ["", "| average WLB speed-up over Plain-4D | simulated | paper |", "|---|---|---|"]
    for label, ctx in (("64K", 65536), ("128K", 131072), ("all", None)):
        sel = [r for r in rows if ctx is None or r["context"] == ctx]
        mean = sum(r["systems"]["wlb"]["speedup"] for r in sel) / len(sel)
        paper = PAPER_SPEEDUP["average" if ctx is None else ctx]
        lines.append(f"| {label} | {_x(mean)} | {paper:.2f}× |")
    return lines


def render_host_path(rec: dict) -> list[str]:
    """host_path (``scripts/bench_host.sh``): one row per layout, its slower measured rank."""
    names = dict.fromkeys(r["name"] for r in rec["figures"]["rows"])  # in order, once each
    by = {n: [r for r in rec["figures"]["rows"] if r["name"] == n] for n in names}
    lines = ["| layout (ranks) | simulated H100 step, stock → WLB | host ms/iter, before → now | "
             "plan / CP strategy / collate + shard / predictions (ms), now (before) | share of "
             "the WLB step on the critical path, before → now | wait with the next inputs made "
             "ahead (ms) | elastic CP ms/iter | start-up (s), first → cached thresholds |",
             "|---" * 8 + "|"]
    for name, rows in by.items():
        worst = max(rows, key=lambda r: r["serial"]["iter_ms"])
        st, sim, now = worst["serial"]["stage_ms"], worst["sim_step_s"], worst["serial"]["iter_ms"]
        old = max((r for r in rows if r.get("before")), default=None,
                  key=lambda r: r["before"]["iter_ms"])
        was, step_ms = old["before"]["iter_ms"] if old else None, sim["wlb"] * 1e3
        cells = []
        for k in ("plan", "cp_strategy", "collate_shard", "predictions"):
            logged = worst["serial"].get("predictions_ms_when_logged")  # (logged iterations)
            cell = (f"{logged:.1f} at 1 in {worst['serial']['log_interval']}"
                    if k == "predictions" and logged else f"{st[k]:.1f}")
            cells.append(cell + (f" ({old['before']['stage_ms'][k]:.1f})" if old else ""))
        share = (f"{was / step_ms:.1%} → " if was else "") + f"{now / step_ms:.1%}"
        lines.append(
            f"| {name} ({rows[0]['world']}) | {sim['plain']:.2f} s → {sim['wlb']:.2f} s | "
            + (f"{was:.1f} → " if was else "") + f"**{now:.1f}** | "
            + " / ".join(cells) + f" | {share} | "
            f"{max(r['overlap']['wait_ms'] for r in rows):.2f} "
            f"(step {max(r['overlap']['step_ms'] for r in rows):.0f} ms) | "
            f"{max(r['elastic']['iter_ms'] for r in rows):.1f} | "
            f"{rows[0].get('first', rows[0]['serial'])['startup_ms'] / 1e3:.1f} → "
            f"{max(r['overlap']['startup_ms'] for r in rows) / 1e3:.1f} |")
    return lines


def render_headline(rec: dict) -> list[str]:
    """The README's headline: one sentence on the first layout."""
    name, f = next(iter(rec["figures"]["layouts"].items()))  # the first layout
    valid = f.get("valid_loss")
    loss = (f", validation loss {valid['baseline']:.4f} (stock) vs {valid['wlb']:.4f} (WLB)"
            if valid else "")
    return [f"**{_x(f['speedup_iter_time'])} faster per iteration than stock Megatron**{loss} "
            f"({name}, {rec['figures'].get('setting', '')}). " + _provenance(rec)]


RENDER = {"bench_cpu": render_layouts, "quickstart": render_layouts, "packing": render_packing,
          "sim_grid": render_sim_grid, "host_path": render_host_path}


def render_block(name: str, kind: str | None = None, root: str = ROOT) -> str:
    path = os.path.join(root, "docs", "results", f"{name}.json")
    if not os.path.exists(path):
        return f"(no result yet: run the command that publishes `{name}`)\n"
    with open(path, encoding="utf-8") as f:
        rec = json.load(f)
    if kind == "headline":
        lines = render_headline(rec)
    else:
        lines = [*RENDER[name](rec), "", _provenance(rec)]
        lines += [f"![{p}](results/{p})" for p in rec["figures"].get("plots", [])]
    return "\n".join(lines) + "\n"


def render(check: bool, root: str = ROOT) -> int:
    stale = []
    for path in [os.path.join(root, "README.md"), *sorted(glob.glob(os.path.join(root, "docs",
                                                                               "*.md")))]:
        with open(path, encoding="utf-8") as f:
            text = f.read()

        kind = "headline" if path.endswith("README.md") else None

        def sub(m: re.Match, kind=kind) -> str:
            return m.group(1) + render_block(m.group(2), kind, root) + m.group(4)

        new = BLOCK.sub(sub, text)
        if new != text:
            stale.append(os.path.relpath(path, root))
            if not check:
                with open(path, "w", encoding="utf-8") as f:
                    f.write(new)
    if check and stale:
        print(f"bench_results: stale result blocks in {', '.join(stale)}; run "
              "`python -m tools.bench_results render`")
        return 1
    return 0


def collect(out: str, pairs: list[str], setting: str, plots: str | None) -> int:
    """Figures of baseline-vs-WLB runs, one ``LAYOUT=BASELINE.jsonl,WLB.jsonl`` pair each."""
    layouts, logs = {}, {}
    for pair in pairs:
        name, _, files = pair.partition("=")
        base, _, wlb = files.partition(",")
        if not (name and base and wlb):
            raise SystemExit(f"bench_results: {pair!r} is not LAYOUT=BASELINE.jsonl,WLB.jsonl")
        layouts[name] = compare(base, wlb)
        logs[name] = (load(base), load(wlb))
    figures = {"setting": setting, "layouts": layouts}
    if plots:
        figures["plots"] = _plots(logs, plots)
    with open(out, "w", encoding="utf-8") as f:
        json.dump(figures, f, indent=1)
    return 0


def _plots(logs: dict, prefix: str) -> list[str]:
    """Iteration time per layout (stock vs WLB) and the first layout's per-micro-batch workload
    (sorted, one line per iteration, before and after)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(logs)
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for k, (arm, color) in enumerate((("stock Megatron", "tab:blue"), ("WLB", "tab:orange"))):
        ms = [summarize(logs[n][k], 1)["iter_ms_mean"] for n in names]  # as compare() skips
        ax.bar([i + 0.4 * k for i in range(len(names))], ms, 0.4, label=arm, color=color)
    ax.set_xticks([i + 0.2 for i in range(len(names))], names)
    ax.set_ylabel("ms per iteration (mean)")
    ax.legend()
    fig.tight_layout()
    made = [f"{prefix}_iter_time.png"]
    fig.savefig(made[0], dpi=110)
    plt.close(fig)
    first = logs[names[0]]
    work = f"{prefix}_microbatch_work.png"
    if plot_microbatch_work({f"{names[0]}, stock Megatron": first[0],
                             f"{names[0]}, WLB": first[1]}, work):
        made.append(work)
    return [os.path.basename(m) for m in made]


def publish(name: str, figures_path: str, command: str, root: str = ROOT) -> int:
    if name not in RENDER:
        raise SystemExit(f"bench_results: NAME {name!r} unknown; choose from {sorted(RENDER)}")
    with open(figures_path, encoding="utf-8") as f:
        figures = json.load(f)
    rec = {"name": name, "date": datetime.date.today().isoformat(), "machine": machine(),
           "commit": commit(), "command": command, "figures": figures}
    results = os.path.join(root, "docs", "results")
    os.makedirs(results, exist_ok=True)
    for plot in figures.get("plots", []):  # written beside the figures file
        shutil.copyfile(os.path.join(os.path.dirname(figures_path), plot),
                        os.path.join(results, plot))
    with open(os.path.join(results, f"{name}.json"), "w", encoding="utf-8") as f:
        json.dump(rec, f, indent=1)
    print(f"[bench_results] docs/results/{name}.json ({rec['machine']}, {rec['commit']})")
    return render(check=False, root=root)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                epilog=__doc__.split("\n", 2)[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=ROOT, help=argparse.SUPPRESS)  # tests: another checkout
    sub = p.add_subparsers(dest="cmd", required=True)
    pub = sub.add_parser("publish", help="record a run's figures and re-render")
    pub.add_argument("name")
    pub.add_argument("figures")
    pub.add_argument("--command", required=True, help="the command that produced the figures")
    c = sub.add_parser("collect", help="figures of baseline-vs-WLB run logs, per layout")
    c.add_argument("out")
    c.add_argument("pairs", nargs="+", metavar="LAYOUT=BASELINE.jsonl,WLB.jsonl")
    c.add_argument("--setting", default="", help="one phrase: model, context, data")
    c.add_argument("--plots", default=None, help="write PREFIX_iter_time.png (and more)")
    r = sub.add_parser("render", help="re-render every results block")
    r.add_argument("--check", action="store_true", help="exit 1 if a block is stale")
    a = p.parse_args(argv)
    if a.cmd == "publish":
        return publish(a.name, a.figures, a.command, a.root)
    if a.cmd == "collect":
        return collect(a.out, a.pairs, a.setting, a.plots)
    return render(a.check, a.root)


if __name__ == "__main__":
    sys.exit(main())
