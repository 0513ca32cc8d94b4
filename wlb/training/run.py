"""run_training: build, (resume,) train for --train-iters, log and checkpoint."""

from __future__ import annotations

import time

import torch
import torch.distributed as dist

from wlb.training.log import MetricsLogger
from wlb.training.loop import train_step
from wlb.training.setup import build


def run_training(args) -> int:
    run = build(args)
    g = run.groups
    log = MetricsLogger(rank=g.rank, train_iters=args.train_iters, log_interval=args.log_interval,
                        json_path=args.log_json, tensorboard_dir=args.tensorboard_dir)
    log.info(f"layout: {g.layout.describe()}; packing={run.wlb.packing} "
             f"cp_sharding={run.wlb.cp_sharding} {run.packer_info}")
    log.info(f"cost model: {run.cost.to_dict()}")
    start = 0
    if args.load:
        from wlb.training.checkpoint import load_checkpoint

        start = load_checkpoint(args.load, run)
        log.info(f"resumed from {args.load} at iteration {start}")
    consumed = 0
    for it in range(start + 1, args.train_iters + 1):
        plan = run.schedule.next_plan()
        t0 = time.perf_counter()
        m = train_step(run, plan)
        ms = torch.tensor([(time.perf_counter() - t0) * 1e3], dtype=torch.float64)
        dist.all_reduce(ms, op=dist.ReduceOp.MAX)
        consumed += plan.num_tokens
        m.update(iteration=it, iter_ms=float(ms), tokens_per_s=plan.num_tokens / float(ms) * 1e3,
                 plan_digest=plan.digest())
        log.iteration(m)
        if args.save and args.save_interval and it % args.save_interval == 0:
            from wlb.training.checkpoint import save_checkpoint

            save_checkpoint(args.save, it, run)
            log.info(f"saved checkpoint at iteration {it} to {args.save}")
    if args.save and (not args.save_interval or args.train_iters % args.save_interval):
        from wlb.training.checkpoint import save_checkpoint

        save_checkpoint(args.save, args.train_iters, run)
        log.info(f"saved checkpoint at iteration {args.train_iters} to {args.save}")
    log.close()
    from wlb.megatron.groups import destroy

    destroy()
    dist.destroy_process_group()
    return 0
