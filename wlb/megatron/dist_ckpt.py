"""Megatron-LM's ``torch_dist`` checkpoints, through megatron-core's ``dist_checkpointing``.

Every tensor is saved as its shard of the global tensor (the model's ``sharded_state_dict``;
the optimizer's Adam moments and fp32 main parameters keyed by the parameter they belong to), so
a checkpoint loads under any TP, PP (and VPP), DP and CP layout, with megatron's distributed
optimizer on or off (the optimizer's part: ``wlb.megatron.optim_ckpt``). The top level is
Megatron-LM's: ``model`` (``model0``, ``model1``, ... with VPP), ``optimizer``,
``opt_param_scheduler``, ``rng_state``, ``iteration``, ``checkpoint_version``, ``args``; the
run's data and packer state is under ``wlb``.

On disk (one directory, written by every rank together)::

    iter_0000100/metadata.json   dist_checkpointing's format marker (torch_dist)
    iter_0000100/__R_T.distcp    shards (each rank's, one file per write bucket); the
                                 non-sharded part (iteration, args, schedule, wlb) is the
                                 ``common_state`` object among them (:func:`read_common`)
    iter_0000100/.metadata       torch.distributed.checkpoint's index of the shards

RNG states are per rank: they are restored only into the layout that saved them (Megatron-LM
does the same); another layout starts from its own seeds, with a log line.
"""

from __future__ import annotations

import argparse
import queue

import torch
from megatron.core import dist_checkpointing
from megatron.core.dist_checkpointing.dict_utils import nested_values
from megatron.core.dist_checkpointing.mapping import ShardedObject, ShardedTensor
from megatron.core.dist_checkpointing.serialization import (
    get_default_load_sharded_strategy,
)
from megatron.core.dist_checkpointing.strategies import filesystem_async
from megatron.core.transformer.enums import AttnBackend
from torch.distributed.checkpoint import FileSystemReader

from wlb.megatron import optim_ckpt
from wlb.megatron.groups import Groups, rng_tracker_states, set_rng_tracker_states

#: Megatron-LM's checkpoint_version of its torch_dist checkpoints
CHECKPOINT_VERSION = 3.0
#: the classes a Megatron-LM ``common.pt`` holds besides tensors, dtypes and builtins: its
#: ``args`` Namespace and the enum of its ``--attention-backend``
SAFE_GLOBALS = [argparse.Namespace, AttnBackend]


def model_keys(chunks: int) -> list[str]:
    """Megatron-LM's top-level key of each model chunk: ``model``, or ``model0``, ... (VPP)."""
    return ["model"] if chunks == 1 else [f"model{i}" for i in range(chunks)]


def _rng_object(groups: Groups, state: dict | None) -> ShardedObject:
    """This rank's RNG states as one shard of a (PP, TP, DP x CP) grid of objects."""
    lay = groups.layout
    return ShardedObject(
        "rng_state", state, (lay.pp, lay.tp, lay.dp * lay.cp),
        (groups.pp_rank, groups.tp_rank, groups.dp_rank * lay.cp + groups.cp_rank),
        replica_id=0)


def rng_state() -> dict:
    """The CPU (and CUDA) generator and megatron's RNG tracker states of this process."""
    return {"torch": torch.get_rng_state(), "tracker": rng_tracker_states(),
            "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() else None}


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    set_rng_tracker_states(state["tracker"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def sharded_state(model: list, optimizer, groups: Groups, *, with_optimizer: bool = True,
                  with_rng: bool = True, loading: bool = False) -> dict:
    """The sharded part of a checkpoint for this rank: model chunks, optimizer, RNG.

    Args:
        model: the DDP-wrapped model chunks.
        optimizer: megatron's optimizer (its state must exist when ``loading``: megatron
            initializes it then).
        groups: this process's coordinates.
        with_optimizer, with_rng: include those parts.
        loading: the dict is a template to load into (megatron's optimizers differ).
    """
    state: dict = {}
    for key, chunk in zip(model_keys(len(model)), model):
        state[key] = chunk.module.sharded_state_dict()
    if with_optimizer:
        state["optimizer"] = optim_ckpt.sharded_optimizer(optimizer, state, loading)
    if with_rng:
        state["rng_state"] = _rng_object(groups, None if loading else rng_state())
    return state


def save(state: dict, directory: str) -> None:
    """Write ``state`` (sharded and common parts; collective) into the empty ``directory``.

    Saves are synchronous, so the writer processes' results travel through an in-process queue
    instead of megatron's default ``multiprocessing.Manager`` queue: no server process (~3 s to
    start on the first save, and left running when a worker is killed).
    """
    if filesystem_async._results_queue is None:
        filesystem_async._results_queue = queue.Queue()
    dist_checkpointing.save(state, directory)


def read_common(directory: str) -> dict:
    """The checkpoint's common (non-sharded) part: ``iteration``, ``args``, the schedule,
    ``wlb``, ... (megatron-core 0.19 keeps it in the shards as the ``common_state`` object; older
    checkpoints in ``common.pt``), read with ``weights_only``. Needs no process group."""
    with torch.serialization.safe_globals(SAFE_GLOBALS):
        return dist_checkpointing.load_common_state_dict(directory)


def saved_shapes(directory: str) -> dict[str, tuple[int, ...]]:
    """Every tensor the checkpoint holds: its key and global shape (from the shards' index)."""
    saved = FileSystemReader(directory).read_metadata().state_dict_metadata
    return {k: tuple(m.size) for k, m in saved.items() if hasattr(m, "size")}


def first_mismatch(template: dict, saved: dict[str, tuple[int, ...]]) -> str | None:
    """The first tensor of ``template`` (by key) that the checkpoint (``saved``:
    :func:`saved_shapes`) lacks or holds in another global shape, as one line; None when all of
    them are there (tensors the checkpoint has beyond the template, e.g. an optimizer under
    --finetune, are not read)."""
    wanted = sorted((t.key, tuple(t.global_shape)) for t in nested_values(template)
                    if isinstance(t, ShardedTensor) and not t.allow_shape_mismatch)
    for key, shape in wanted:
        if key not in saved:
            return f"{key} (shape {shape}) is not in the checkpoint"
        if saved[key] != shape:
            return f"{key}: shape {saved[key]} in the checkpoint, {shape} in this run's model"
    return None


def load(template: dict, directory: str) -> dict:
    """Read the shards ``template`` names from ``directory`` (collective), resharded to this
    rank's layout; returns the filled state dict (common part included)."""
    with torch.serialization.safe_globals(SAFE_GLOBALS):
        return dist_checkpointing.load(template, directory,
                                       get_default_load_sharded_strategy(directory))


def apply_model(model: list, loaded: dict, strict: bool = True) -> None:
    """Copy the loaded model chunks into ``model``."""
    for key, chunk in zip(model_keys(len(model)), model):
        chunk.module.load_state_dict(loaded[key], strict=strict)
