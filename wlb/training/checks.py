"""Checks a running job makes every iteration: every rank agrees on the plan, the loss is finite.

Each raises :class:`TrainingError` with one line naming the iteration and the value at fault;
``pretrain_gpt_wlb.py`` prints it and exits non-zero.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist


class TrainingError(RuntimeError):
    """The run cannot go on (non-finite loss, ranks disagreeing on the plan, ...)."""


def check_plan_agreement(digest: str, iteration: int, device=None, what: str = "packing plans",
                         group=None) -> None:
    """Every rank (of ``group``; default: the world) computed the same plan (``digest``, hex),
    or fail loudly (collective)."""
    value = int(digest[:15], 16)  # 60 bits: fits int64
    t = torch.tensor([value, -value], dtype=torch.int64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN, group=group)
    t = t.cpu()
    if int(t[0]) != value or -int(t[1]) != value:
        raise TrainingError(
            f"iteration {iteration}: ranks computed different {what} (rank "
            f"{dist.get_rank()} has {digest}); same data, seed and flags on every rank?"
        )


def check_finite(m: dict, iteration: int, save_dir: str | None) -> None:
    """The iteration's loss and gradient norm are finite."""
    bad = [k for k in ("lm_loss", "grad_norm") if m.get(k) is not None and not
           math.isfinite(m[k])]
    if bad:
        where = f"; last good checkpoint: {save_dir}" if save_dir else ""
        raise TrainingError(
            f"iteration {iteration}: non-finite {' and '.join(bad)} "
            f"({', '.join(f'{k}={m[k]}' for k in bad)}); stopping before any checkpoint is "
            f"written{where}"
        )
