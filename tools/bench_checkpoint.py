#!/usr/bin/env python3
"""Time a checkpoint save and load in each format, for one process of a model shape.

Takes ``pretrain_gpt_wlb.py``'s own flags (model shape, layout, ``--mock-data`` ...), builds the
run as training does (model, optimizer with its Adam state, LR schedule, data state), then saves
and loads it ``--iters`` times in each of ``--formats`` through the training loop's own
``save_checkpoint`` / ``load_checkpoint`` (temporary directory, rename, tracker included) into
``--dir``, and prints the medians; with ``--json`` the last line is one JSON object.

    python -m tools.bench_checkpoint --mock-data --num-layers 16 --hidden-size 2048 \\
        --num-attention-heads 16 --ffn-hidden-size 5632 --seq-length 2048 \\
        --global-batch-size 1 --train-iters 1 --dir /tmp/bench_ckpt --json

One process (``build`` makes a group of one when not run under torchrun).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time


def _own_flags(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Every other flag is pretrain_gpt_wlb.py's own (see docs/flags.md).")
    p.add_argument("--dir", required=True, help="scratch directory (emptied first)")
    p.add_argument("--iters", type=int, default=3, help="saves and loads per format")
    p.add_argument("--formats", default="torch,torch_dist", help="comma-separated formats")
    p.add_argument("--json", action="store_true", help="end with one JSON line of figures")
    own, rest = p.parse_known_args(argv)
    if own.iters < 1:
        p.error(f"--iters={own.iters} must be >= 1")
    from wlb.training.checkpoint import FORMATS

    for f in own.formats.split(","):
        if f not in FORMATS:
            p.error(f"--formats: {f!r} is not one of {', '.join(FORMATS)}")
    return own, rest


def main(argv: list[str] | None = None) -> int:
    own, rest = _own_flags(sys.argv[1:] if argv is None else argv)
    import torch

    from wlb.megatron.optim import leaf_optimizers
    from wlb.training.arguments import build_parser, run_config
    from wlb.training.checkpoint_io import load_checkpoint, save_checkpoint
    from wlb.training.setup import build

    cfg = run_config(build_parser().parse_args(rest))
    run = build(cfg)
    for leaf in leaf_optimizers(run.optimizer):
        inner = leaf.optimizer  # a zero-gradient Adam step: the state a trained run has
        for group in inner.param_groups:
            for p in group["params"]:
                p.grad = torch.zeros_like(p)
        inner.step()
        inner.zero_grad()
    params = sum(p.numel() for m in run.model for p in m.parameters())
    shutil.rmtree(own.dir, ignore_errors=True)
    out: dict = {"params": params, "layout": run.groups.layout.describe(), "iters": own.iters,
                 "formats": {}}
    for fmt in own.formats.split(","):
        run.cfg.checkpoint.ckpt_format = fmt
        d = os.path.join(own.dir, fmt)
        saves, loads = [], []
        for i in range(own.iters):
            t = time.perf_counter()
            final = save_checkpoint(d, i + 1, run, fmt=fmt)
            saves.append(time.perf_counter() - t)
            t = time.perf_counter()
            load_checkpoint(d, run, log=lambda s: None)
            loads.append(time.perf_counter() - t)
        size = sum(os.path.getsize(os.path.join(final, f)) for f in os.listdir(final))
        out["formats"][fmt] = {"save_s": statistics.median(saves),
                               "load_s": statistics.median(loads), "first_save_s": saves[0],
                               "bytes": size}
        print(f"{fmt:>10}: save {statistics.median(saves):.3f} s, load "
              f"{statistics.median(loads):.3f} s (medians of {own.iters}; first save "
              f"{saves[0]:.3f} s), {size / 2**20:.1f} MiB", flush=True)
    shutil.rmtree(own.dir, ignore_errors=True)
    print(f"{params / 1e6:.1f}M parameters, {out['layout']}")
    if own.json:
        print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
