#!/usr/bin/env python3
"""Cluster-scale simulator: iteration time of Plain-4D, Fixed-4D and WLB-LLM on a 4D layout.

Runs the project's own packers and CP selector over a document-length stream and megatron's
(interleaved) 1F1B schedule over per-micro-batch stage latencies (``wlb/sim``). Subcommands:

    python -m tools.simulate_cluster grid        # the paper's Table 1 grid vs its Fig. 12 figures
    python -m tools.simulate_cluster ablation    # 7B-128K ablation vs the paper's Fig. 13
    python -m tools.simulate_cluster config --model 7b --tp 8 --cp 2 --pp 4 --dp 1 --context 131072
    python -m tools.simulate_cluster validate --calibration cost.json --log run.jsonl --nproc 2 \\
        -- <the pretrain_gpt_wlb.py flags of that run>   # predicted vs measured iteration time

Hardware: ``--hardware h100`` (assumed figures, see wlb/sim/hardware.py) or a calibration JSON
from tools/calibrate_cost_model.py. Speed-up = tokens/s over Plain-4D (WLB with outlier delay
trains a different number of tokens per iteration, so iteration time alone would flatter it).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace

import numpy as np

from wlb.data.lengths import DEFAULT_LENGTHS, scaled_lengths
from wlb.packing.stream import DataError
from wlb.parallel import ParallelDims
from wlb.sim.cluster import SYSTEMS, SimReport, simulate_system
from wlb.sim.hardware import from_calibration, h100
from wlb.sim.model import (
    MODELS,
    PAPER_ABLATION_7B_128K,
    PAPER_GRID,
    PAPER_SPEEDUP,
)


def load_lengths(path: str, context: int, scale: float | None) -> np.ndarray:
    """The sample at ``path`` scaled to a ``context``-token window (``wlb.data.lengths``)."""
    try:
        return scaled_lengths(path, context, scale)
    except DataError as e:
        raise SystemExit(f"simulate_cluster.py: {e}") from None


def run_config(model: str, layout: ParallelDims, context: int, systems: list[str], a) -> dict:
    hw = h100() if a.hardware == "h100" else from_calibration(a.hardware, MODELS[model])
    if a.attn_tflops:
        hw = replace(hw, attention=replace(hw.attention, peak_flops=a.attn_tflops * 1e12))
    if a.gemm_tflops:
        hw = replace(hw, gemm_flops=a.gemm_tflops * 1e12)
    if a.comm_exposed is not None:
        hw = replace(hw, comm_exposed=a.comm_exposed)
    lengths = load_lengths(a.doc_lengths, context, a.length_scale)
    out: dict = {"model": model, "context": context, "layout": layout.describe(),
                 "gpus": layout.world_size, "systems": {}}
    for name in systems:
        t0 = time.perf_counter()
        rep: SimReport = simulate_system(SYSTEMS[name], MODELS[model], layout, context, lengths,
                                         hw, iters=a.iters, seed=a.seed)
        out["systems"][name] = {**rep.summary(), "sim_s": time.perf_counter() - t0}
    base = out["systems"][systems[0]]["tokens_per_s"]
    for s in out["systems"].values():
        s["speedup"] = s["tokens_per_s"] / base
    return out


def _fmt_row(cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def cmd_grid(a) -> list[dict]:
    systems = ["plain", "fixed", "wlb-nodelay", "wlb", "wlb-elastic", "wlb-elastic-delay"]
    rows = []
    print(_fmt_row(["model", "context", "layout (vpp 2)", "GPUs", "Plain-4D s/iter",
                    "Fixed-4D", "WLB, no delay", "WLB", "elastic CP, no delay",
                    "elastic CP + delay", "PP imb. plain->WLB", "CP imb. plain->WLB"]))
    print(_fmt_row(["---"] * 12))
    for (model, ctx), layout in PAPER_GRID.items():
        r = run_config(model, layout, ctx, systems, a)
        rows.append(r)
        s = r["systems"]
        print(_fmt_row([
            model, f"{ctx // 1024}K", layout.describe(), layout.world_size,
            f"{s['plain']['iter_s_mean']:.3f}",
            *(f"{s[k]['speedup']:.3f}x" for k in systems[1:]),
            f"{s['plain']['pp_imbalance_mean']:.2f} -> {s['wlb']['pp_imbalance_mean']:.2f}",
            f"{s['plain']['cp_imbalance_mean']:.3f} -> {s['wlb']['cp_imbalance_mean']:.3f}",
        ]), flush=True)
    print()
    for label, key in (("64K", 65536), ("128K", 131072), ("all", None)):
        sel = [r for r in rows if key is None or r["context"] == key]
        wlb = float(np.mean([r["systems"]["wlb"]["speedup"] for r in sel]))
        fixed = float(np.mean([r["systems"]["fixed"]["speedup"] for r in sel]))
        paper = PAPER_SPEEDUP["average" if key is None else key]
        print(f"average {label:>4}: WLB {wlb:.3f}x over Plain-4D (paper {paper:.2f}x); "
              f"Fixed-4D {fixed:.3f}x (paper {PAPER_SPEEDUP['fixed_vs_plain']:.2f}x on average)")
    return rows


def cmd_ablation(a) -> list[dict]:
    systems = ["plain", "cp-per-doc", "cp-adaptive", "pp-packing", "wlb-nodelay", "wlb",
               "wlb-elastic"]
    r = run_config("7b", PAPER_GRID[("7b", 131072)], 131072, systems, a)
    print(_fmt_row(["7B-128K, applied", "simulated speed-up", "paper (Fig. 13)",
                    "PP imbalance", "CP imbalance"]))
    print(_fmt_row(["---"] * 5))
    for name in systems:
        s = r["systems"][name]
        print(_fmt_row([name, f"{s['speedup']:.3f}x", PAPER_ABLATION_7B_128K.get(name, "-"),
                        f"{s['pp_imbalance_mean']:.2f}", f"{s['cp_imbalance_mean']:.3f}"]))
    return [r]


def cmd_config(a) -> list[dict]:
    if a.model not in MODELS:
        raise SystemExit(f"--model {a.model!r}: choose from {sorted(MODELS)}")
    layout = ParallelDims(a.tp, a.cp, a.pp, a.dp, a.vpp)
    r = run_config(a.model, layout, a.context, a.systems.split(","), a)
    print(f"{a.model} {a.context} tokens, {layout.describe()} ({layout.world_size} GPUs), "
          f"{a.iters} iterations:")
    for name, s in r["systems"].items():
        print(f"  {name:12s} {s['iter_s_mean']:.4f} s/iter  {s['tokens_per_s']:.4g} tok/s  "
              f"x{s['speedup']:.3f}  PP imb {s['pp_imbalance_mean']:.2f}  CP imb "
              f"{s['cp_imbalance_mean']:.3f}  {s['strategies']}")
    return [r]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False)
    sub = p.add_subparsers(dest="cmd", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--hardware", default="h100",
                        help="'h100' (assumed figures) or a calibration JSON")
    common.add_argument("--doc-lengths", default=DEFAULT_LENGTHS)
    common.add_argument("--length-scale", type=float, default=None,
                        help="multiply sample lengths by this (default: context / 128K)")
    common.add_argument("--iters", type=int, default=64)
    common.add_argument("--seed", type=int, default=1234)
    common.add_argument("--json", default=None, help="also write the figures to this file")
    common.add_argument("--attn-tflops", type=float, default=None,
                        help="sensitivity: attention fwd+bwd TFLOP/s of the h100 profile (450)")
    common.add_argument("--gemm-tflops", type=float, default=None,
                        help="sensitivity: GEMM TFLOP/s (h100 profile: 544)")
    common.add_argument("--comm-exposed", type=float, default=None,
                        help="sensitivity: exposed fraction of TP/CP collectives (0.3)")
    sub.add_parser("grid", parents=[common], help="paper Table 1 grid")
    sub.add_parser("ablation", parents=[common], help="7B-128K ablation")
    c = sub.add_parser("config", parents=[common], help="one configuration")
    c.add_argument("--model", default="7b")
    for k, v in (("tp", 8), ("cp", 2), ("pp", 4), ("dp", 1), ("vpp", 2)):
        c.add_argument(f"--{k}", type=int, default=v)
    c.add_argument("--context", type=int, default=131072)
    c.add_argument("--systems", default=",".join(SYSTEMS))
    v = sub.add_parser("validate", allow_abbrev=False,
                       help="predicted vs measured iteration time of a CPU run")
    v.add_argument("--calibration", required=True, nargs="+",
                   help="calibration JSON(s) of the run's model on this machine; several are "
                        "averaged")
    v.add_argument("--log", required=True, nargs="+", help="--log-json file(s) of the run(s)")
    v.add_argument("--nproc", type=int, default=2, help="processes the run used")
    v.add_argument("--skip", type=int, default=1, help="leading iterations left out (warm-up)")
    v.add_argument("--json", default=None, help="also write the figures to this file")
    argv = list(sys.argv[1:] if argv is None else argv)
    rest = argv[argv.index("--") + 1:] if "--" in argv else []
    a = p.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    if a.cmd == "validate":
        # needs torch and megatron-core; the other commands do not
        from wlb.host.replay import validate
        from wlb.megatron.arguments import ArgumentError
        from wlb.megatron.indexed import IndexedDocuments
        from wlb.megatron.replica import run_config_for

        try:  # the run's own command line, as Megatron-LM parses and validates it
            cfg = run_config_for(rest, a.nproc)
        except ArgumentError as e:
            raise SystemExit(f"simulate_cluster.py validate: {e}") from None
        return validate(a, cfg, IndexedDocuments)
    if rest:
        p.error(f"arguments after '--' are only for 'validate': {' '.join(rest)}")
    if a.iters < 1:
        raise SystemExit(f"--iters {a.iters} must be >= 1")
    rows = {"grid": cmd_grid, "ablation": cmd_ablation, "config": cmd_config}[a.cmd](a)
    if a.json:
        with open(a.json, "w", encoding="utf-8") as f:
            json.dump({"hardware": a.hardware, "iters": a.iters, "results": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
