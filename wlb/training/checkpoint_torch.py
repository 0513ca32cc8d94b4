"""WLB's first checkpoint format (``--ckpt-format torch``): one ``torch.save`` file per rank.

    iter_0000100/meta.json             the run's state (``wlb.training.checkpoint``), JSON
    iter_0000100/rank_00000.pt ...     per-rank model/optimizer/scheduler/RNG tensors

Files hold tensors and builtin containers only and are read with ``weights_only=True``. A
checkpoint in this format resumes only under the layout that wrote it (each file is one rank's
shards); ``--ckpt-convert-format torch_dist`` rewrites it in the layout-free format.
"""

from __future__ import annotations

import os
import zipfile

import torch

META = "meta.json"


class RankFileError(RuntimeError):
    """A rank file that is missing or cannot be read (the message names it)."""


def rank_file(path: str, rank: int) -> str:
    return os.path.join(path, f"rank_{rank:05d}.pt")


def check_rank_file(path: str, rank: int) -> None:
    """Raise RankFileError unless ``rank``'s file exists and is a torch zip archive."""
    f = rank_file(path, rank)
    if not os.path.exists(f):
        raise RankFileError(f"{f} is missing")
    if not zipfile.is_zipfile(f):
        raise RankFileError(f"{f} is truncated or not a torch checkpoint file (not a zip "
                            "archive)")


def _main_params(opt) -> list[list[torch.Tensor]]:
    """fp32 master copies that are not views of model params (bf16 / fp16 training)."""
    for attr in ("shard_fp32_from_float16_groups", "fp32_from_float16_groups"):
        groups = getattr(opt, attr, None)
        if groups is not None:
            return groups
    return []


def write_rank_file(path: str, rank: int, run, rng: dict) -> None:
    """This rank's model, optimizer (inner state and fp32 main params), schedule and RNG."""
    from wlb.megatron.optim import leaf_optimizers

    state = {
        "model": [m.module.state_dict() for m in run.model],
        "optimizer": [
            {"inner": opt.optimizer.state_dict(),
             "main_params": [[p.detach().clone() for p in g] for g in _main_params(opt)]}
            for opt in leaf_optimizers(run.optimizer)
        ],
        "scheduler": run.scheduler.state_dict(),
        "rng": rng,
    }
    torch.save(state, rank_file(path, rank))


def read_rank_file(path: str, rank: int) -> dict:
    """The state :func:`write_rank_file` wrote (onto the CPU: a resume need not map ranks to
    the same GPUs, and RNG states stay CPU byte tensors)."""
    f = rank_file(path, rank)
    try:
        return torch.load(f, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as e:
        raise RankFileError(f"cannot read {f} ({type(e).__name__}: "
                            f"{str(e).splitlines()[0][:200]})") from None


def apply_rank_state(state: dict, run, *, optimizer: bool) -> None:
    """Copy the model (and, if ``optimizer``, the optimizer's state and fp32 main params) into
    ``run``; the schedule and RNG are the caller's."""
    for m, sd in zip(run.model, state["model"]):
        m.module.load_state_dict(sd)
    if not optimizer:
        return
    from wlb.megatron.optim import leaf_optimizers

    for opt, sd in zip(leaf_optimizers(run.optimizer), state["optimizer"]):
        opt.optimizer.load_state_dict(sd["inner"])
        for group, saved in zip(_main_params(opt), sd["main_params"]):
            for p, s in zip(group, saved):
                p.data.copy_(s)
