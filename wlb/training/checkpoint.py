"""Checkpoints in Megatron-LM's directory layout, written atomically.

    DIR/latest_checkpointed_iteration.txt    the iteration to resume from (replaced atomically)
    DIR/iter_0000100/                        one checkpoint:
        --ckpt-format torch_dist (default)   Megatron-LM's: megatron-core dist_checkpointing
                                             (``wlb.megatron.dist_ckpt``), loads under any layout
        --ckpt-format torch                  WLB's first format, per-rank files
                                             (``wlb.training.checkpoint_torch``), same layout only

Every rank writes into ``iter_XXXXXXX.tmp``; after a barrier rank 0 renames the directory into
place and only then updates the tracker file. A crash at any point leaves the previous
checkpoint and tracker untouched.

Besides model, optimizer, LR schedule and RNG, a checkpoint holds the run's *state* (``meta``,
under ``wlb`` in the common state or in ``meta.json``): the data position and the packer's queues
(global: every rank computes the same plan, so they are stored once and restored under any
layout with the same global batch size), the tokens trained, the LR schedule flags, the WLB
settings and the layout that wrote it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os

from wlb.training import checkpoint_torch as legacy

TRACKER = "latest_checkpointed_iteration.txt"
FORMATS = ("torch_dist", "torch")
COMMON = "common state"  # dist_checkpointing's non-sharded part (torch_dist)


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be loaded into this run (the message says why)."""


#: the schedule flags a resume must agree on (what Megatron's OptimizerParamScheduler checks)
LR_SCHEDULE = ("lr", "min_lr", "lr_warmup_iters", "lr_decay_iters", "lr_decay_style",
               "weight_decay")


def layout_meta(lay, distributed_optimizer: bool | None = None) -> dict:
    """The layout as a checkpoint records it (with the optimizer's kind unless None)."""
    meta = {"world_size": lay.world_size, "tp": lay.tp, "pp": lay.pp, "cp": lay.cp,
            "vpp": lay.vpp, "dp": lay.dp, "sequence_parallel": lay.sequence_parallel}
    if distributed_optimizer is not None:
        meta["distributed_optimizer"] = bool(distributed_optimizer)
    return meta


def disk_format(path: str) -> str | None:
    """The format of the checkpoint directory ``path``, or None if it holds neither."""
    if os.path.isfile(os.path.join(path, "metadata.json")):
        return "torch_dist"
    if os.path.isfile(os.path.join(path, legacy.META)):
        return "torch"
    return None


def read_common(path: str) -> dict:
    """The common part of a torch_dist checkpoint (``wlb.megatron.dist_ckpt.read_common``)."""
    from wlb.megatron.dist_ckpt import read_common as read

    return read(path)


def locate(load_dir: str, step: int | None = None) -> tuple[int, str] | None:
    """(iteration, directory) of the checkpoint to load: ``step``'s (``--ckpt-step``) or the
    tracker's; None when ``load_dir`` has no tracker (nothing saved there yet)."""
    if step is None:
        tracker = os.path.join(load_dir, TRACKER)
        try:
            with open(tracker) as f:
                step = int(f.read().strip())
        except FileNotFoundError:
            return None
        except (ValueError, UnicodeDecodeError):
            raise CheckpointError(f"--load {load_dir}: {TRACKER} is not an iteration "
                                  "number") from None
    path = os.path.join(load_dir, f"iter_{step:07d}")
    if not os.path.isdir(path):
        raise CheckpointError(f"--load {load_dir}: no checkpoint of iteration {step} ({path} "
                              "does not exist)")
    return step, path


def _read_meta(path: str, fmt: str, finetune: bool) -> dict:
    """The run state of the checkpoint at ``path``; ``{}`` for another program's checkpoint
    (no run state), which only ``--finetune`` loads."""
    try:
        if fmt == "torch":
            with open(os.path.join(path, legacy.META)) as f:
                meta = json.load(f)
        else:
            meta = read_common(path).get("wlb")
    except Exception as e:  # noqa: BLE001 -- any unreadable file is one line
        name = legacy.META if fmt == "torch" else COMMON
        raise CheckpointError(f"--load {path}: cannot read its {name} ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:200] if str(e) else ''})") from None
    if meta is None and fmt == "torch_dist" and finetune:
        return {}  # weights of another program's checkpoint
    if not isinstance(meta, dict) or "layout" not in meta:
        raise CheckpointError(f"--load {path}: not a checkpoint written by pretrain_gpt_wlb.py "
                              "(no run state); load its weights with --finetune")
    return meta


def check_checkpoint(load_dir: str, cfg, layout, ranks=()) -> tuple[int, str, dict] | None:
    """Everything about ``--load`` that can be checked without a model: the checkpoint to load,
    its format against ``--ckpt-format``, its run state against this run (the layout for the
    torch format, the global batch size and packer for the data state, the LR schedule unless
    an override flag is given) and its files (torch format: each of ``ranks``' file).

    Returns:
        (iteration, its directory, its run state; ``{}`` for another program's checkpoint
        under ``--finetune``), or None when ``load_dir`` holds no checkpoint yet. Raises
        CheckpointError naming the file or value.
    """
    ck = cfg.checkpoint
    found = locate(load_dir, ck.ckpt_step)
    if found is None:
        return None
    iteration, path = found
    fmt = disk_format(path)
    if fmt is None:
        raise CheckpointError(f"--load {path}: neither a torch_dist checkpoint (metadata.json) "
                              f"nor a torch one ({legacy.META})")
    if fmt != ck.ckpt_format:
        raise CheckpointError(
            f"--load {path}: a {fmt} checkpoint, this run's --ckpt-format is {ck.ckpt_format}; "
            f"pass --ckpt-format {fmt} (with --ckpt-convert-format and --ckpt-convert-save to "
            "rewrite it in another format)")
    if fmt == "torch_dist":
        check_shards(path)
    meta = _read_meta(path, fmt, ck.finetune)
    if not meta:
        return iteration, path, meta  # another program's weights (--finetune)
    if fmt == "torch":
        want = layout_meta(layout, cfg.parallel.use_distributed_optimizer)
        if meta["layout"] != want:
            raise CheckpointError(
                f"--load {path}: saved with layout {meta['layout']}, this run is {want}; a "
                "torch-format checkpoint resumes only under its layout (convert it with "
                "--ckpt-convert-format torch_dist to change the layout)")
        for rank in ranks:
            try:
                legacy.check_rank_file(path, rank)
            except legacy.RankFileError as e:
                raise CheckpointError(f"--load {path}: {e}") from None
    if ck.finetune:
        return iteration, path, meta
    _check_run_state(path, meta, cfg, layout)
    return iteration, path, meta


def check_shards(path: str) -> None:
    """Raise CheckpointError unless every shard file the torch_dist checkpoint's index
    (``.metadata``) names exists and is long enough for the shards it holds."""
    from torch.distributed.checkpoint import FileSystemReader

    try:
        index = FileSystemReader(path).read_metadata()
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"--load {path}: cannot read .metadata, the shards' index "
                              f"({type(e).__name__})") from None
    need: dict[str, int] = {}
    for info in (index.storage_data or {}).values():
        need[info.relative_path] = max(need.get(info.relative_path, 0),
                                       info.offset + info.length)
    for name, size in sorted(need.items()):
        f = os.path.join(path, name)
        if not os.path.isfile(f):
            raise CheckpointError(f"--load {path}: {f} is missing")
        if os.path.getsize(f) < size:
            raise CheckpointError(f"--load {path}: {f} is truncated ({os.path.getsize(f)} "
                                  f"bytes, its shards need {size})")


def _check_run_state(path: str, meta: dict, cfg, layout) -> None:
    """The data state and LR schedule of ``meta`` against this run (not under --finetune)."""
    problem = packer_switch_problem(meta, cfg.wlb)
    if problem:
        raise CheckpointError(f"--load {path}: {problem}")
    gbs = meta.get("global_batch_size", meta["layout"].get("global_batch_size"))
    if gbs is not None and gbs != layout.global_batch_size:
        raise CheckpointError(
            f"--load {path}: saved with --global-batch-size {gbs}, this run uses "
            f"{layout.global_batch_size}: the data position and the packer's queued documents "
            "are counted in global batches of that size; resume with it (or --finetune)")
    t = cfg.training
    saved = meta.get("lr_schedule")  # checkpoints before 2026-12-01 lack it
    if (saved and not cfg.checkpoint.no_load_optim
            and not (t.override_opt_param_scheduler or t.use_checkpoint_opt_param_scheduler)):
        diff = [f"--{k.replace('_', '-')} {saved[k]} (saved) vs {getattr(t, k)} (now)"
                for k in LR_SCHEDULE if saved.get(k) != getattr(t, k)]
        if diff:
            raise CheckpointError(
                f"--load {path}: the LR schedule differs from the checkpoint's: "
                f"{'; '.join(diff)}; pass --override-opt-param-scheduler (use this run's) or "
                "--use-checkpoint-opt-param-scheduler (use the checkpoint's)"
            )


def _batches(packing: str, global_batch: str) -> str:
    """Which global batches a run draws: stock Megatron's samples, or WLB's document stream."""
    return "samples" if packing == "megatron" or global_batch == "megatron" else "documents"


def pending_pieces(data_state: dict) -> int:
    """Document pieces a saved packer holds back (carry-over and outlier queues)."""
    packer = data_state.get("packer", {})
    queues = packer.get("queues", {}).get("queues", []) if isinstance(packer.get("queues"),
                                                                      dict) else []
    return len(packer.get("carry", [])) + sum(len(q) for q in queues)


def packer_switch_problem(meta: dict, wlb) -> str | None:
    """Why this run (``wlb``: its WLB settings) cannot continue the data state of ``meta``, or
    None. The same packer continues; another (stock <-> WLB) continues when both draw stock
    Megatron's global batches (``--wlb-global-batch megatron`` on the WLB side: the batch
    position carries over) and the saved packer holds no documents back (the new one could not
    train them)."""
    saved = meta.get("wlb", {})
    packing = saved.get("packing")
    if packing == wlb.packing:
        return None
    before = _batches(packing, saved.get("global_batch", "documents"))
    now = _batches(wlb.packing, wlb.global_batch)
    if before != now or before != "samples":
        return (f"saved with --wlb-packing {packing}, this run uses {wlb.packing}: switching "
                "packers continues the data position only when both draw stock Megatron's "
                "global batches (--wlb-global-batch megatron on the WLB side); otherwise load "
                "the weights with --finetune")
    held = pending_pieces(meta.get("data", {}))
    if held:
        return (f"saved with --wlb-packing {packing} holding {held} document pieces back (its "
                f"outlier queues / carry-over), which --wlb-packing {wlb.packing} cannot train; "
                f"continue with {packing} until they are trained, or load the weights with "
                "--finetune")
    return None


def run_state(run, iteration: int, data_state: dict | None) -> dict:
    """The run's state a checkpoint holds besides tensors (JSON-able builtins)."""
    lay = run.groups.layout
    state = {"iteration": iteration,
             "layout": layout_meta(lay, run.cfg.parallel.use_distributed_optimizer),
             "global_batch_size": lay.global_batch_size,
             "lr_schedule": {k: getattr(run.cfg.training, k) for k in LR_SCHEDULE},
             "wlb": vars(run.wlb) | {"thresholds": str(run.wlb.thresholds)},
             "data": run.schedule.state_dict() if data_state is None else data_state,
             "packer_info": run.packer_info,
             "tokens_trained": run.tokens_trained, "format": 1}
    return json.loads(json.dumps(state, default=str))  # builtins only (weights_only loads)


def megatron_args(cfg, layout) -> argparse.Namespace:
    """Megatron-LM's ``args`` of a checkpoint: this run's flags under Megatron's names."""
    flat: dict = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            flat.update(dataclasses.asdict(value))
    flat.update(tensor_model_parallel_size=layout.tp, pipeline_model_parallel_size=layout.pp,
                context_parallel_size=layout.cp, data_parallel_size=layout.dp,
                world_size=layout.world_size, global_batch_size=layout.global_batch_size,
                ckpt_format=cfg.checkpoint.ckpt_format)
    return argparse.Namespace(**json.loads(json.dumps(flat, default=str)))
