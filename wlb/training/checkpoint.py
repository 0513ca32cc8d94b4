"""Checkpoints: model, optimizer, LR schedule, RNG and data/packer state, written atomically.

Layout of ``--save DIR``::

    DIR/latest_checkpointed_iteration.txt    the iteration to resume from (replaced atomically)
    DIR/iter_0000100/meta.json               layout, args, data/packer state (JSON)
    DIR/iter_0000100/rank_00000.pt ...       per-rank model/optimizer/scheduler/RNG tensors

Every rank writes into ``iter_XXXXXXX.tmp``; after a barrier rank 0 writes ``meta.json``, renames
the directory into place and only then updates the tracker file. A crash at any point leaves the
previous checkpoint and tracker untouched. Files are plain ``torch.save`` of tensors and builtin
containers, loaded with ``weights_only=True``. Resuming needs the same parallel layout (checked).
megatron's ``dist_checkpointing`` (resharding across layouts) is not used yet.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile

import torch
import torch.distributed as dist

TRACKER = "latest_checkpointed_iteration.txt"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be loaded into this run (the message says why)."""


def _leaf_optimizers(optimizer) -> list:
    return list(getattr(optimizer, "chained_optimizers", None) or [optimizer])


def _main_params(opt) -> list[list[torch.Tensor]]:
    """fp32 master copies that are not views of model params (bf16 / fp16 training)."""
    for attr in ("shard_fp32_from_float16_groups", "fp32_from_float16_groups"):
        groups = getattr(opt, attr, None)
        if groups is not None:
            return groups
    return []


def _layout_meta(lay, distributed_optimizer: bool) -> dict:
    return {"world_size": lay.world_size, "tp": lay.tp, "pp": lay.pp, "cp": lay.cp,
            "vpp": lay.vpp, "dp": lay.dp, "sequence_parallel": lay.sequence_parallel,
            "distributed_optimizer": bool(distributed_optimizer)}


#: the schedule flags a resume must agree on (what Megatron's OptimizerParamScheduler checks)
LR_SCHEDULE = ("lr", "min_lr", "lr_warmup_iters", "lr_decay_iters", "lr_decay_style",
               "weight_decay")


def _lr_schedule(training) -> dict:
    return {k: getattr(training, k) for k in LR_SCHEDULE}


def check_checkpoint(load_dir: str, cfg, layout, ranks=()) -> tuple[int, str, dict]:
    """Everything about ``--load`` that can be checked without a model: the tracker, the
    iteration's ``meta.json`` (a WLB checkpoint, the same layout and packer, the LR schedule
    unless one of Megatron's override flags is given) and a readable file for each of ``ranks``
    (a rank checks its own; the launcher's one-process pre-flight checks them all).

    Returns:
        (iteration, its directory, its meta). Raises CheckpointError naming the file or value.
    """
    tracker = os.path.join(load_dir, TRACKER)
    try:
        with open(tracker) as f:
            iteration = int(f.read().strip())
    except FileNotFoundError:
        raise CheckpointError(f"--load {load_dir}: no {TRACKER} (nothing saved there)") from None
    except (ValueError, UnicodeDecodeError):
        raise CheckpointError(f"--load {load_dir}: {TRACKER} is not an iteration number") from None
    path = os.path.join(load_dir, f"iter_{iteration:07d}")
    try:
        with open(os.path.join(path, "meta.json")) as f:
            meta = json.load(f)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"--load {load_dir}: cannot read {path}/meta.json ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != 1 or "layout" not in meta:
        raise CheckpointError(f"--load {path}: meta.json is not a WLB checkpoint's (format 1)")
    want = _layout_meta(layout, cfg.parallel.use_distributed_optimizer)
    if meta["layout"] != want:
        raise CheckpointError(
            f"--load {path}: saved with layout {meta['layout']}, this run is {want}; resume with "
            "the same parallel layout"
        )
    if meta.get("wlb", {}).get("packing") != cfg.wlb.packing:
        raise CheckpointError(f"--load {path}: saved with --wlb-packing "
                              f"{meta.get('wlb', {}).get('packing')}, this run uses "
                              f"{cfg.wlb.packing}")
    t = cfg.training
    saved = meta.get("lr_schedule")  # checkpoints before 2026-12-01 lack it
    if saved and not (t.override_opt_param_scheduler or t.use_checkpoint_opt_param_scheduler):
        diff = [f"--{k.replace('_', '-')} {saved[k]} (saved) vs {getattr(t, k)} (now)"
                for k in LR_SCHEDULE if saved.get(k) != getattr(t, k)]
        if diff:
            raise CheckpointError(
                f"--load {path}: the LR schedule differs from the checkpoint's: "
                f"{'; '.join(diff)}; pass --override-opt-param-scheduler (use this run's) or "
                "--use-checkpoint-opt-param-scheduler (use the checkpoint's)"
            )
    for rank in ranks:
        f = os.path.join(path, f"rank_{rank:05d}.pt")
        if not os.path.exists(f):
            raise CheckpointError(f"--load {path}: {f} is missing")
        if not zipfile.is_zipfile(f):
            raise CheckpointError(f"--load {path}: {f} is truncated or not a torch checkpoint "
                                  "file (not a zip archive)")
    return iteration, path, meta


def _rank_state(run) -> dict:
    from wlb.megatron.groups import rng_tracker_states

    return {
        "model": [m.module.state_dict() for m in run.model],
        "optimizer": [
            {"inner": opt.optimizer.state_dict(),
             "main_params": [[p.detach().clone() for p in g] for g in _main_params(opt)]}
            for opt in _leaf_optimizers(run.optimizer)
        ],
        "scheduler": run.scheduler.state_dict(),
        "rng": {"torch": torch.get_rng_state(), "tracker": rng_tracker_states(),
                "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() else None},
    }


def save_checkpoint(save_dir: str, iteration: int, run, crash_hook=None,
                    data_state: dict | None = None) -> str:
    """Write the checkpoint of ``iteration`` (collective: every rank calls it).

    ``crash_hook`` (tests) runs after this rank's file is written, before the rename.
    ``data_state``: the plan schedule's state right after ``iteration``'s plan was drawn
    (``wlb.training.prefetch``: the schedule itself may be a plan further); default: its state.
    """
    rank = dist.get_rank()
    final = os.path.join(save_dir, f"iter_{iteration:07d}")
    tmp = final + ".tmp"
    if rank == 0:
        os.makedirs(save_dir, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)  # leftovers of a crashed save
        os.makedirs(tmp)
    dist.barrier()
    torch.save(_rank_state(run), os.path.join(tmp, f"rank_{rank:05d}.pt"))
    if crash_hook is not None:
        crash_hook()
    dist.barrier()
    if rank == 0:
        meta = {"iteration": iteration,
                "layout": _layout_meta(run.groups.layout,
                                       run.cfg.parallel.use_distributed_optimizer),
                "lr_schedule": _lr_schedule(run.cfg.training),
                "wlb": vars(run.wlb) | {"thresholds": str(run.wlb.thresholds)},
                "data": run.schedule.state_dict() if data_state is None else data_state,
                "packer_info": run.packer_info,
                "tokens_trained": run.tokens_trained, "format": 1}
        with open(os.path.join(tmp, "meta.json"), "w") as f:
            json.dump(meta, f, default=str)
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
    dist.barrier()
    return final


def load_checkpoint(load_dir: str, run) -> int:
    """Restore the latest checkpoint under ``load_dir``; returns its iteration."""
    iteration, path, meta = check_checkpoint(load_dir, run.cfg, run.groups.layout)
    # Read onto the CPU and copy into place (model, main params) or let the optimizer cast its
    # state to each param's device: a resume need not map ranks to the same GPUs as the save,
    # and RNG states must stay CPU byte tensors.
    rank_file = os.path.join(path, f"rank_{dist.get_rank():05d}.pt")
    try:
        state = torch.load(rank_file, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"--load {path}: cannot read {rank_file} "
                              f"({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    for m, sd in zip(run.model, state["model"]):
        m.module.load_state_dict(sd)
    for opt, sd in zip(_leaf_optimizers(run.optimizer), state["optimizer"]):
        opt.optimizer.load_state_dict(sd["inner"])
        for group, saved in zip(_main_params(opt), sd["main_params"]):
            for p, s in zip(group, saved):
                p.data.copy_(s)
    try:
        run.scheduler.load_state_dict(state["scheduler"])
    except AssertionError as e:  # megatron's own schedule check (for checkpoints without ours)
        raise CheckpointError(f"--load {path}: {e}; pass --override-opt-param-scheduler or "
                              "--use-checkpoint-opt-param-scheduler") from None
    from wlb.megatron.groups import set_rng_tracker_states

    torch.set_rng_state(state["rng"]["torch"])
    set_rng_tracker_states(state["rng"]["tracker"])
    if state["rng"]["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["rng"]["cuda"])
    run.schedule.load_state_dict(meta["data"])
    run.tokens_trained = int(meta.get("tokens_trained", 0))  # (checkpoints before Dec 2026: 0)
    dist.barrier()
    return iteration
