"""run_training: build, (resume,) train for --train-iters, log, check and checkpoint."""

from __future__ import annotations

import json
import os
import signal
import time

import torch
import torch.distributed as dist

from wlb.run_config import RunConfig
from wlb.training.checks import check_finite, check_plan_agreement
from wlb.training.evaluate import ValidationSet, evaluate
from wlb.training.log import MetricsLogger, is_logged
from wlb.training.loop import host_path, train_step
from wlb.training.prefetch import HostPrefetcher
from wlb.training.setup import Run, build

#: fault injection for the crash tests: "save:<iteration>" kills this process with SIGKILL in the
#: middle of that iteration's checkpoint save (after the shards, before the rename); only in the
#: first attempt of a job that torchrun restarts (--max-restarts), as a real fault would.
CRASH_ENV = "WLB_TEST_CRASH"


def _maybe_crash(point: str) -> None:
    first_attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"
    if os.environ.get(CRASH_ENV) == point and first_attempt:
        os.kill(os.getpid(), signal.SIGKILL)


def build_validation(run: Run, log: MetricsLogger) -> ValidationSet | None:
    """The fixed validation batches, or None (no valid split, or --eval-iters 0)."""
    cfg, layout = run.cfg, run.groups.layout
    v = cfg.validation
    if v.eval_iters == 0:
        return None
    if run.documents.valid is None:
        log.info(f"no validation: --split {cfg.data.split} gives the valid split no documents")
        return None
    val = ValidationSet(run.documents.valid, layout.global_batch_size, cfg.model.seq_length,
                        v.eval_iters, layout.dp, cfg.training.seed)
    log.info(f"validation: {v.eval_iters} x {layout.global_batch_size} samples of the valid "
             f"split ({len(run.documents.valid.lengths)} documents; {val.num_tokens} tokens, "
             f"digest {val.digest}) every {v.eval_interval} iterations and after the last")
    return val


def should_exit(it: int, t_start: float, cfg: RunConfig, device=None) -> str | None:
    """Why the run stops after iteration ``it`` (--exit-interval, --exit-duration-in-mins), or
    None. Every rank reaches the same verdict (the elapsed time is the slowest rank's)."""
    tr = cfg.training
    if tr.exit_interval and it % tr.exit_interval == 0:
        return f"--exit-interval {tr.exit_interval}"
    if tr.exit_duration_in_mins:
        mins = torch.tensor([(time.time() - t_start) / 60.0], dtype=torch.float64, device=device)
        dist.all_reduce(mins, op=dist.ReduceOp.MAX)
        if float(mins.cpu()) > tr.exit_duration_in_mins:
            return f"--exit-duration-in-mins {tr.exit_duration_in_mins:g}"
    return None


def run_training(cfg: RunConfig) -> int:
    t_start = time.time()
    run = build(cfg)
    g, ck, lg = run.groups, cfg.checkpoint, cfg.logging
    train_iters = cfg.training.train_iters
    log = MetricsLogger(rank=g.rank, train_iters=train_iters, log_interval=lg.log_interval,
                        json_path=lg.log_json, tensorboard_dir=lg.tensorboard_dir)
    log.info(f"layout: {g.layout.describe()}; packing={run.wlb.packing} "
             f"cp_sharding={run.wlb.cp_sharding} attention={run.attention_kernel} "
             f"{run.packer_info}")
    log.info(f"cost model: {run.cost.to_dict()}")
    for w in run.warnings:
        log.info(f"warning: {w}")
    for note in lg.notes:
        log.info(note)
    start = 0
    if ck.load:
        from wlb.training.checkpoint_io import load_checkpoint, save_checkpoint

        loaded = load_checkpoint(ck.load, run, log=lambda s: log.info(f"warning: {s}"))
        if loaded is None:  # (--exit-on-missing-checkpoint stopped at the pre-flight)
            log.info(f"warning: no checkpoint in --load {ck.load} yet; training from scratch")
        elif ck.finetune:
            log.info(f"loaded the model weights of {ck.load} (--finetune); starting at 0")
        else:
            start = loaded
            log.info(f"resumed from {ck.load} at iteration {start}")
        if ck.ckpt_convert_format and loaded is not None:
            save_checkpoint(ck.ckpt_convert_save, loaded, run, fmt=ck.ckpt_convert_format)
            log.info(f"converted {ck.load} (iteration {loaded}) to {ck.ckpt_convert_format} "
                     f"in {ck.ckpt_convert_save}")
            log.close()
            _shutdown()
            return 0
    validation = build_validation(run, log)
    plans = open(lg.log_plans, "a") if lg.log_plans and g.rank == 0 else None  # noqa: SIM115
    # iteration i+1's plan and inputs are made while iteration i trains (--wlb-host-prefetch)
    steps = HostPrefetcher(run.schedule, host_path(run), first_iteration=start + 1,
                           ahead=run.wlb.host_prefetch, log_plans=plans is not None)
    try:
        for it in range(start + 1, train_iters + 1):
            step = steps.next(more=it < train_iters)
            plan = step.plan
            digest = plan.digest()
            check_plan_agreement(digest, it, run.device)
            t0 = time.perf_counter()
            # (ends with a host sync: the loss is read back)
            m = train_step(run, plan, step.inputs, step.pending_tokens,
                           logged=is_logged(it, lg.log_interval, train_iters))
            ms = torch.tensor([(time.perf_counter() - t0) * 1e3], dtype=torch.float64,
                              device=run.device)
            dist.all_reduce(ms, op=dist.ReduceOp.MAX)
            ms = ms.cpu()
            m.update(iteration=it, iter_ms=float(ms), host_wait_ms=steps.last_wait_ms,
                     host_ms=sum(step.inputs.stage_ms.values()),
                     tokens_per_s=plan.num_tokens / float(ms) * 1e3, plan_digest=digest)
            check_finite(m, it, ck.save)
            run.tokens_trained += plan.num_tokens
            m["tokens_trained"] = run.tokens_trained
            log.iteration(m)
            if plans:
                plans.write(json.dumps({"iteration": it, "consumed": step.consumed,
                                        "trained": step.trained,
                                        "pending": step.pending}) + "\n")
                plans.flush()
            last = it == train_iters
            if validation and (it % cfg.validation.eval_interval == 0 or last):
                log.validation(it, run.tokens_trained, evaluate(run, validation),
                               validation.digest)
            stop = None if last else should_exit(it, t_start, cfg, run.device)
            if ck.save and ((ck.save_interval and it % ck.save_interval == 0) or last or stop):
                from wlb.training.checkpoint_io import save_checkpoint

                save_checkpoint(ck.save, it, run, data_state=step.data_state,
                                crash_hook=lambda it=it: _maybe_crash(f"save:{it}"))
                log.info(f"saved checkpoint at iteration {it} to {ck.save}")
            if stop:
                log.info(f"exiting after iteration {it} ({stop})")
                break
    finally:
        steps.close()
        if plans:
            plans.close()
        log.close()
    _shutdown()
    return 0


def _shutdown() -> None:
    from wlb.megatron.groups import destroy

    destroy()
    dist.destroy_process_group()
