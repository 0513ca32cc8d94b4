#!/usr/bin/env python3
"""Time the training loop's host path for one rank: plan -> CP strategies -> collate + shard.

Takes ``pretrain_gpt_wlb.py``'s flags (Megatron-LM's, parsed and validated by Megatron-LM,
and ``--wlb-*``) and runs, for the rank ``--rank`` of a ``--world-size`` job, exactly what WLB's
data iterator runs on the host before megatron's schedule can take a micro-batch
(``PlanSchedule.next_plan`` and ``wlb.host.step.prepare_step``, through its
``HostPrefetcher``). It builds no model and no process group, so the collectives a step adds
(plan agreement, the loss all-reduce) are not in the figures.

    python -m tools.bench_data_path --world-size 64 --rank 0 --iters 20 --json \\
        --data-path corpus_text_document --tokenizer-type NullTokenizer --vocab-size 32000 \\
        --micro-batch-size 1 --lr 3e-4 --eval-interval 1000 --transformer-impl local \\
        --attention-dropout 0 --max-position-embeddings 131072 \\
        --tensor-model-parallel-size 8 --context-parallel-size 2 \\
        --pipeline-model-parallel-size 4 --num-layers 32 --hidden-size 4096 \\
        --num-attention-heads 32 --seq-length 131072 --global-batch-size 4 \\
        --wlb-packing wlb --wlb-cp-sharding adaptive --wlb-outlier-thresholds auto

``--step-ms S`` stands in for the GPU step: the loop sleeps S ms per iteration, and ``wait_ms``
is how long it then waits for its next inputs, made in the background meanwhile (without
``--step-ms`` they are made on the critical path, and ``wait_ms`` is all of ``iter_ms``).
With ``--json`` the last line is one JSON object: ``iter_ms`` (median host work per iteration,
without overlap), ``wait_ms``, ``stage_ms`` (median per stage), ``predictions_ms_when_logged``
(the cost-model predictions run only at logged iterations: ``--log-interval``), ``startup_ms``
(data, cost model, packer and its auto-tuned thresholds), the layout and the rank's coordinates.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from wlb.host.prefetch import HostPrefetcher
from wlb.host.step import STAGES, RankView, is_logged, make_prepare


def _own_flags(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Every other flag is pretrain_gpt_wlb.py's (Megatron-LM's and --wlb-*).")
    p.add_argument("--world-size", type=int, required=True, help="processes in the job")
    p.add_argument("--rank", type=int, default=0, help="the global rank whose view is timed")
    p.add_argument("--iters", type=int, default=10, help="iterations timed (after --warmup)")
    p.add_argument("--warmup", type=int, default=1, help="iterations run first, not timed")
    p.add_argument("--step-ms", type=float, default=0.0,
                   help="stand-in GPU step: the loop sleeps this long per iteration")
    p.add_argument("--json", action="store_true", help="end with one JSON line of figures")
    own, rest = p.parse_known_args(argv)
    for name in ("world_size", "iters"):
        if getattr(own, name) < 1:
            p.error(f"--{name.replace('_', '-')}={getattr(own, name)} must be >= 1")
    if own.warmup < 0 or own.step_ms < 0:
        p.error(f"--warmup={own.warmup} and --step-ms={own.step_ms:g} must be >= 0")
    return own, rest


def build_host_path(cfg, world_size: int, rank: int):
    """What every rank builds before training that the host path uses: (schedule, chooser,
    source, cost, view, elastic runtime or None), with no model and no process group."""
    from wlb.host.build import build_schedule, make_cost_model, padded_vocab, stock_blend
    from wlb.host.documents import build_documents
    from wlb.host.elastic import build_runtime, comm_price, split_efficiency
    from wlb.megatron.indexed import IndexedDocuments

    layout = cfg.layout(world_size)
    where = layout.coordinates(rank)
    docs = build_documents(cfg.data, cfg.model, cfg.training.seed, stock_blend(cfg),
                           IndexedDocuments)
    cost = make_cost_model(cfg.model, cfg.wlb, layout, padded_vocab(cfg.model,
                                                                    docs.source.vocab_size))
    schedule, _, chooser = build_schedule(cfg, layout, docs.train, cost, docs.train_blend)
    elastic = None
    if cfg.wlb.elastic_cp:
        elastic = build_runtime(None, cost, chooser,
                                comm_price(cfg.wlb.elastic_comm_coef, cfg.wlb.cost_model),
                                split_efficiency(cfg.wlb.cost_model))
    view = RankView(layout, where["dp"], where["cp"])
    return schedule, chooser, docs.train, cost, view, elastic


def bench(cfg, world_size: int, rank: int, iters: int, warmup: int = 1,
          step_ms: float = 0.0) -> dict:
    """Median milliseconds of the host path's stages for ``rank`` over ``iters`` iterations."""
    t0 = time.perf_counter()
    schedule, chooser, source, cost, view, elastic = build_host_path(cfg, world_size, rank)
    startup_ms = (time.perf_counter() - t0) * 1e3
    # the training loop's own host path (predictions at logged iterations)
    prepare = make_prepare(view, chooser, source, cost=cost, elastic=elastic,
                           rank_tokens=schedule.packer.max_tokens // view.layout.cp,
                           log_interval=cfg.logging.log_interval)

    rows, waits, logged = [], [], []
    # as the training loop: the next step made in the background while the stand-in one runs
    with HostPrefetcher(schedule, prepare, ahead=step_ms > 0) as steps:
        for it in range(warmup + iters):
            step = steps.next(more=it < warmup + iters - 1)
            if step_ms:
                time.sleep(step_ms / 1e3)
            if it >= warmup:
                rows.append(dict(step.inputs.stage_ms,
                                 total=sum(step.inputs.stage_ms.values())))
                waits.append(steps.last_wait_ms)
                if is_logged(it + 1, cfg.logging.log_interval):
                    logged.append(step.inputs.stage_ms["predictions"])
    stages = STAGES
    layout = view.layout
    return {
        "iter_ms": float(np.median([r["total"] for r in rows])),
        "wait_ms": float(np.median(waits)),
        "stage_ms": {s: float(np.median([r[s] for r in rows])) for s in stages},
        # the predictions run at logged iterations only (--log-interval)
        "log_interval": cfg.logging.log_interval,
        "predictions_ms_when_logged": float(np.median(logged)) if logged else None,
        "startup_ms": startup_ms,
        "layout": layout.describe(),
        "rank": rank,
        "coordinates": layout.coordinates(rank),
        "global_batch_size": layout.global_batch_size,
        "seq_length": layout.seq_length,
        "microbatches_on_rank": len(step.inputs.inputs),
        "iters": iters,
        "step_ms": step_ms,
    }


def main(argv: list[str] | None = None) -> int:
    own, rest = _own_flags(sys.argv[1:] if argv is None else argv)
    from wlb.config import ConfigError
    from wlb.megatron import cpu_loop
    from wlb.parallel import LayoutError

    cpu_loop.apply()  # (megatron's validation asks for the GPU's architecture)
    from wlb.megatron.arguments import ArgumentError
    from wlb.megatron.replica import run_config_for

    try:
        cfg = run_config_for(rest, own.world_size)
        out = bench(cfg, own.world_size, own.rank, own.iters, own.warmup, own.step_ms)
    except (ArgumentError, ConfigError, LayoutError, ValueError, OSError) as e:
        print(f"bench_data_path: error: {e}", file=sys.stderr)
        return 2
    st = out["stage_ms"]
    print(f"{out['layout']}; rank {own.rank} {out['coordinates']}: host path "
          f"{out['iter_ms']:.1f} ms/iter (median of {own.iters}): "
          + ", ".join(f"{k} {v:.1f}" for k, v in st.items())
          + f"; waits {out['wait_ms']:.1f} ms per step; start-up {out['startup_ms']:.0f} ms")
    if own.json:
        print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
