"""Save and load a run's checkpoint (collective: every rank calls them); what is on disk and
what a resume must agree on is ``wlb.training.checkpoint``."""

from __future__ import annotations

import json
import os
import shutil

import torch.distributed as dist

from wlb.training import checkpoint_torch as legacy
from wlb.training.checkpoint import (
    TRACKER,
    CheckpointError,
    check_checkpoint,
    layout_meta,
    megatron_args,
    run_state,
)


def save_checkpoint(save_dir: str, iteration: int, run, crash_hook=None,
                    data_state: dict | None = None, fmt: str | None = None) -> str:
    """Write the checkpoint of ``iteration`` in ``fmt`` (default ``--ckpt-format``).

    ``crash_hook`` (tests) runs after this rank's shards are written, before the rename.
    ``data_state``: the plan schedule's state right after ``iteration``'s plan was drawn
    (``wlb.training.prefetch``: the schedule itself may be a plan further); default: its state.
    """
    from wlb.megatron import dist_ckpt

    fmt = fmt or run.cfg.checkpoint.ckpt_format
    rank = dist.get_rank()
    final = os.path.join(save_dir, f"iter_{iteration:07d}")
    tmp = final + ".tmp"
    if rank == 0:
        os.makedirs(save_dir, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)  # leftovers of a crashed save
        os.makedirs(tmp)
    dist.barrier()
    state = run_state(run, iteration, data_state)
    if fmt == "torch_dist":
        sharded = dist_ckpt.sharded_state(run.model, run.optimizer, run.groups)
        dist_ckpt.save(sharded | {
            "iteration": iteration, "checkpoint_version": dist_ckpt.CHECKPOINT_VERSION,
            "args": megatron_args(run.cfg, run.groups.layout),
            "opt_param_scheduler": run.scheduler.state_dict(), "wlb": state}, tmp)
    else:
        legacy.write_rank_file(tmp, rank, run, dist_ckpt.rng_state())
        if rank == 0:
            with open(os.path.join(tmp, legacy.META), "w") as f:
                json.dump(state, f)
    if crash_hook is not None:
        crash_hook()
    dist.barrier()
    if rank == 0:
        _publish(save_dir, tmp, final, iteration)
    dist.barrier()
    return final


def _publish(save_dir: str, tmp: str, final: str, iteration: int) -> None:
    """Rename ``tmp`` to ``final``, then point the tracker at it (each step atomic)."""
    if os.path.exists(final):  # re-saving an iteration: swap, then drop the old copy
        old = final + ".old"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
    tracker_tmp = os.path.join(save_dir, TRACKER + ".tmp")
    with open(tracker_tmp, "w") as f:
        f.write(str(iteration))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tracker_tmp, os.path.join(save_dir, TRACKER))


def load_checkpoint(load_dir: str, run, log=print) -> int | None:
    """Restore the checkpoint ``--load`` names (``--ckpt-step``, else the tracker's); returns
    the iteration to continue after (0 under ``--finetune``), or None when ``load_dir`` holds
    no checkpoint yet. ``log`` gets one line for what was not restored and why."""
    from wlb.megatron import dist_ckpt, optim_ckpt

    ck = run.cfg.checkpoint
    found = check_checkpoint(load_dir, run.cfg, run.groups.layout, [dist.get_rank()])
    if found is None:
        return None
    iteration, path, meta = found
    saved_layout = dict(meta.get("layout") or {})
    saved_distopt = bool(saved_layout.pop("distributed_optimizer", False))
    same_layout = saved_layout == layout_meta(run.groups.layout)  # (RNG: any optimizer)
    with_optim = not (ck.finetune or ck.no_load_optim)
    with_rng = not (ck.finetune or ck.no_load_rng) and same_layout
    if not (with_rng or ck.finetune or ck.no_load_rng):
        log(f"RNG state not restored: saved under layout {meta.get('layout')} (a rank's "
            "generators belong to its place in the layout); this run starts from its seeds")
    try:
        if ck.ckpt_format == "torch_dist":
            template = dist_ckpt.sharded_state(run.model, run.optimizer, run.groups,
                                               with_optimizer=with_optim, with_rng=with_rng,
                                               loading=True)
            saved = dist_ckpt.saved_shapes(path)
            mains = {}
            if with_optim:  # saved with the distributed optimizer on and now off, or vice versa
                mains = optim_ckpt.retarget(template["optimizer"], set(saved))
            problem = dist_ckpt.first_mismatch(template, saved)
            if problem and problem.startswith("optimizer.state.fp32_param."):
                raise CheckpointError(
                    f"--load {path}: saved without fp32 main parameters (an fp32 run without "
                    "the distributed optimizer), which this bf16 run's optimizer keeps; pass "
                    "--use-distributed-optimizer (its main parameters are then read from the saved "
                    "fp32 weights) or --no-load-optim")
            if problem:
                raise CheckpointError(f"--load {path}: {problem} (another model shape?)")
            loaded = dist_ckpt.load(template, path)
            dist_ckpt.apply_model(run.model, loaded)
            if with_optim:
                optim_ckpt.load_main(loaded["optimizer"], mains,
                                     lambda t: dist_ckpt.load(t, path))
                optim_ckpt.load(run.optimizer, loaded["optimizer"], saved_distopt)
            # (the common part, common.pt, comes merged into what dist_checkpointing loads)
            scheduler, rng = loaded.get("opt_param_scheduler"), loaded.get("rng_state")
        else:
            saved = legacy.read_rank_file(path, dist.get_rank())
            legacy.apply_rank_state(saved, run, optimizer=with_optim)
            scheduler, rng = saved["scheduler"], saved["rng"]
    except legacy.RankFileError as e:
        raise CheckpointError(f"--load {path}: {e}") from None
    except CheckpointError:
        raise
    except Exception as e:  # noqa: BLE001 -- a shape/key mismatch or an unreadable shard
        raise CheckpointError(f"--load {path}: {type(e).__name__}: "
                              f"{str(e).splitlines()[0][:300] if str(e) else ''}") from None
    if not with_optim:
        run.optimizer.reload_model_params()  # fp32 main copies from the loaded weights
    if with_optim and scheduler is not None:
        try:
            run.scheduler.load_state_dict(scheduler)
        except AssertionError as e:  # megatron's own schedule check
            raise CheckpointError(f"--load {path}: {e}; pass --override-opt-param-scheduler or "
                                  "--use-checkpoint-opt-param-scheduler") from None
    if with_rng and rng is not None:
        dist_ckpt.set_rng_state(rng)
    dist.barrier()
    if ck.finetune:
        return 0
    try:
        same_packer = meta.get("wlb", {}).get("packing") == run.wlb.packing
        run.schedule.load_state_dict(meta["data"], packer=same_packer)
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(
            f"--load {path}: its data state does not fit this run ({e}); resume with the "
            "checkpoint's --seq-length and --wlb-* settings, or pass --finetune to start this "
            "run's data afresh from its weights") from None
    run.tokens_trained = int(meta.get("tokens_trained", 0))  # (checkpoints before Dec 2026: 0)
    return iteration
