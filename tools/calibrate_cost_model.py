#!/usr/bin/env python3
"""Fit the WLB cost model W(d) = A*d^2 + B*d + C to measured fwd+bwd times of the real model.

Builds the model as pretrain_gpt_wlb.py does (Megatron-LM's flags, built by Megatron-LM's own
set-up; one process, CP=1), times the
forward+backward of packed micro-batches made of documents of known lengths, and fits
``t = A*sum(d^2) + B*sum(d) + C*num_docs + t0`` by non-negative least squares. It also times the
optimizer step and measures the attention throughput table of the adaptive CP selector (achieved
causal pairs/us vs query and key length, this model's heads; ``--no-attention-table`` skips it).
Writes one JSON that ``--wlb-cost-model`` reads: the training run takes the cost model from it,
and the selector's table too unless ``--wlb-kernel-table`` is given. The raw samples are kept for
the cluster simulator (``tools/simulate_cluster.py validate``). Example:

    python -m tools.calibrate_cost_model --out cost.json --seq-length 8192 --num-layers 2 \\
        --hidden-size 64 --num-attention-heads 4 --mock-data

Any pretrain_gpt_wlb.py flag is accepted (parsed and validated by Megatron-LM); parallel sizes
are forced to 1, and without a GPU megatron's local layers run on gloo. The fit and its error
are printed.
"""

from __future__ import annotations

import platform
import sys
import time
import warnings

warnings.filterwarnings("ignore")


def _nnls(X, y):
    """Exact non-negative least squares for a handful of unknowns: the best unconstrained fit over
    every subset of columns whose coefficients all come out >= 0."""
    import itertools

    import numpy as np

    best, best_err = np.zeros(X.shape[1]), np.inf
    for k in range(1, X.shape[1] + 1):
        for cols in itertools.combinations(range(X.shape[1]), k):
            coef, *_ = np.linalg.lstsq(X[:, cols], y, rcond=None)
            if (coef < 0).any():
                continue
            err = float(np.sum((X[:, cols] @ coef - y) ** 2))
            if err < best_err:
                best_err, best = err, np.zeros(X.shape[1])
                best[list(cols)] = coef
    return best


def design(max_len: int) -> list[tuple[int, ...]]:
    """Micro-batches to time: one document of each length, and many short documents."""
    out, d = [], 128
    while d <= max_len:
        out.append((d,))
        d *= 2
    # many-document micro-batches with varied counts, so that per-token and per-document costs
    # can be told apart (with one count per length they are collinear)
    for n, d in ((2, 64), (8, 64), (32, 64), (64, 32), (4, 128), (16, 128), (8, 256), (4, 512),
                 (2, 1024)):
        if n * d <= max_len:
            out.append((d,) * n)
    return out


def attention_table(args, kernel: str, device: str, reps: int) -> dict:
    """The adaptive CP selector's table (``wlb.cp.profile``) with the model's heads, on this
    machine: query lengths up to --seq-length, key lengths up to S_max."""
    from wlb.cp.profile import KV_LENS, Q_LENS, measure_table
    from wlb.packing.base import default_max_tokens

    heads, dim = args.num_attention_heads, args.hidden_size // args.num_attention_heads
    q_lens = [x for x in Q_LENS if x <= args.seq_length]
    kv_lens = [x for x in (*KV_LENS, 16384) if x <= default_max_tokens(args.seq_length)]
    t0 = time.perf_counter()
    table = measure_table(heads, args.num_query_groups or heads, dim, q_lens, kv_lens, reps=reps,
                          threads=args.threads, device=device,
                          dtype="bfloat16" if args.bf16 else "float32",
                          tile_q=1 if kernel == "torch" else 128, backend=kernel,
                          log=lambda m: None)
    print(f"[calibrate] attention table {len(q_lens)}x{len(kv_lens)} (q x kv), {kernel}, "
          f"measured in {time.perf_counter() - t0:.0f} s", flush=True)
    return table


def _attention_only(args, tool) -> int:
    """``--attention-only``: the table alone, written atomically to ``--out``."""
    import json
    import os

    import torch

    from wlb.cp.kernels import resolve_backend
    from wlb.megatron.arguments import wlb_run_config

    device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        kernel = resolve_backend(wlb_run_config(args).model.attention_backend, torch.empty(
            0, device=device, dtype=torch.bfloat16 if args.bf16 else torch.float32))
    except (RuntimeError, ValueError) as e:
        print(f"calibrate_cost_model.py: error: {e}", file=sys.stderr)
        return 2
    table = attention_table(args, kernel, device, reps=tool.repeats)
    table["command"] = "python -m tools.calibrate_cost_model " + " ".join(sys.argv[1:])
    with open(tool.out + ".tmp", "w", encoding="utf-8") as f:
        json.dump(table, f, indent=1, allow_nan=True)
    os.replace(tool.out + ".tmp", tool.out)
    print(f"[calibrate] wrote {tool.out}")
    return 0


def main(argv=None) -> int:
    import argparse

    own = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False)
    own.add_argument("--out", required=True, help="cost-model JSON to write")
    own.add_argument("--repeats", type=int, default=3)
    own.add_argument("--no-attention-table", action="store_true",
                     help="skip the attention throughput table (adaptive CP selector)")
    own.add_argument("--attention-only", action="store_true",
                     help="measure only the attention throughput table of the model's heads "
                     "(no model built) and write it alone: a --wlb-kernel-table file")
    tool, flags = own.parse_known_args(sys.argv[1:] if argv is None else argv)
    import numpy as np
    import torch

    from wlb.megatron.arguments import ArgumentError
    from wlb.megatron.replica import build_replica, replica_args

    try:
        if tool.attention_only:
            return _attention_only(replica_args(flags), tool)
        args, model, optimizer = build_replica(flags)
    except ArgumentError as e:
        print(f"calibrate_cost_model.py: error: {e}", file=sys.stderr)
        return 2

    from wlb.cost_model import CostModel
    from wlb.cp.kernels import resolve_backend
    from wlb.cp.torch_kernel import REVISION
    from wlb.megatron.arguments import wlb_run_config
    from wlb.megatron.attention import WLBPackedSeqParams
    from wlb.packing.base import default_max_tokens

    dev = next(model.parameters()).device
    kernel = resolve_backend(wlb_run_config(args).model.attention_backend,
                             torch.empty(0, device=dev, dtype=next(model.parameters()).dtype))
    args.repeats, args.out, args.no_attention_table = (tool.repeats, tool.out,
                                                       tool.no_attention_table)

    def sync() -> None:  # GPU work is asynchronous: time it to completion
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    vocab = args.padded_vocab_size
    cap = default_max_tokens(args.seq_length)  # S_max: the longest micro-batch WLB may pack
    rows, times, measured = [], [], []
    for lens in design(cap):
        t_tok = sum(lens)
        tokens = torch.randint(0, vocab, (1, t_tok)).to(dev)
        pos = torch.cat([torch.arange(d) for d in lens])[None].to(dev)
        params = WLBPackedSeqParams(qkv_format="thd", seq_lens=lens, cp_strategy="per_seq",
                                    positions=pos[0])
        samples = []
        for rep in range(args.repeats + 1):
            sync()
            t0 = time.perf_counter()
            loss = model(input_ids=tokens, position_ids=pos, attention_mask=None,
                         labels=tokens, packed_seq_params=params)
            loss.float().sum().backward()
            sync()
            if rep:  # the first call warms up
                samples.append(time.perf_counter() - t0)
        model.zero_grad_buffer()
        ms = float(np.median(samples)) * 1e3
        rows.append([sum(d * d for d in lens), t_tok, len(lens), 1.0])
        times.append(ms)
        measured.append({"doc_lens": [len(lens), lens[0]], "ms": ms})  # n documents of d
        print(f"[calibrate] {len(lens):3d} doc(s) of {lens[0]:6d} tokens: {ms:9.2f} ms", flush=True)
    # the optimizer step (on the gradients of the last micro-batch): per-iteration fixed time
    step = []
    for _ in range(args.repeats):
        sync()
        t0 = time.perf_counter()
        optimizer.step()
        sync()
        step.append(time.perf_counter() - t0)
    step_ms = float(np.median(step)) * 1e3
    print(f"[calibrate] optimizer step: {step_ms:.2f} ms", flush=True)
    extra = {}
    if not args.no_attention_table:
        extra["kernel_table"] = attention_table(args, kernel, dev.type, reps=2)
    X, y = np.asarray(rows, dtype=np.float64), np.asarray(times)
    # minimise the *relative* error: short micro-batches matter as much as long ones
    Xw, yw = X / y[:, None], np.ones_like(y)
    scale = Xw.max(axis=0)
    coef = _nnls(Xw / scale, yw) / scale
    pred = X @ coef
    rel = np.abs(pred - y) / y
    a, b, c = (float(x) for x in coef[:3])
    if a == 0 and b == 0:
        print("calibrate_cost_model: fit gave A=B=0; timings too noisy", file=sys.stderr)
        return 2
    # normalise so the linear coefficient is 1 (units: "tokens of linear work")
    norm = b if b > 0 else a
    cost = CostModel(a / norm, b / norm, c / norm, source="calibrated")
    cost.to_json(args.out, fit_ms={"attn_ms_per_d2": a, "linear_ms_per_token": b,
                                   "doc_ms": c, "microbatch_ms": float(coef[3])},
                 fit_max_rel_error=float(rel.max()), fit_mean_rel_error=float(rel.mean()),
                 step_ms=step_ms, threads=args.threads, machine=platform.machine(),
                 device=torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
                 torch_kernel_revision=REVISION,
                 **extra,
                 samples=measured,
                 model={k: getattr(args, k) for k in ("num_layers", "hidden_size",
                                                      "ffn_hidden_size", "num_attention_heads",
                                                      "num_query_groups", "seq_length",
                                                      "padded_vocab_size")})
    print(f"[calibrate] W(d) = {cost.attn_coef:.3e} d^2 + {cost.linear_coef:.3f} d + "
          f"{cost.doc_coef:.1f} (crossover d = {cost.crossover_length():.0f}); fit error mean "
          f"{rel.mean():.1%}, max {rel.max():.1%} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
