"""Per-iteration micro-batches for the schedule: layout, CP strategy, collation, predictions.

The CP strategy of every micro-batch is chosen once per iteration (:func:`lay_out`), on exactly
the document lengths that are trained (the packed pieces plus the pad document collation adds),
and that one choice feeds both the tensors this rank trains (:func:`build_inputs`) and the logged
predictions (:func:`plan_predictions`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch

from wlb.cost_model import CostModel
from wlb.cp.selector import StrategyChooser
from wlb.cp.shard import segment_arrays
from wlb.cp.strategy import Strategy
from wlb.data.collate import collate_shard
from wlb.data.sources import DocumentSource
from wlb.metrics import imbalance, imbalance_floor
from wlb.packing.types import BatchPlan, MicroBatch, packed_seq_lens


@dataclass(frozen=True)
class MicroBatchLayout:
    """How one micro-batch of the plan is trained (the same on every rank).

    Attributes:
        index: micro-batch index in the iteration's plan (0..N-1).
        pieces: its pieces (empty: a padding-only micro-batch).
        dp_rank: the DP rank that trains it.
        seq_lens: the trained document lengths: the pieces, then the pad document.
        strategy: its CP sharding.
    """

    index: int
    pieces: MicroBatch
    dp_rank: int
    seq_lens: tuple[int, ...]
    strategy: Strategy


@dataclass
class MicroBatchInput:
    """What ``forward_step`` feeds the model for one micro-batch on this rank.

    Attributes:
        index: micro-batch index in the iteration's plan (0..N-1).
        tokens, labels, loss_mask, positions: [t_local] tensors (this CP rank's rows).
        seq_lens: document lengths of the whole micro-batch (incl. a pad document).
        strategy: CP sharding used.
        group: elastic CP: (first pool rank, size) of the group that runs it; None: the
            layout's CP group.
        num_pieces: how many of ``seq_lens`` are the documents' pieces (the rest: padding).
    """

    index: int
    tokens: torch.Tensor
    labels: torch.Tensor
    loss_mask: torch.Tensor
    positions: torch.Tensor
    seq_lens: tuple[int, ...]
    strategy: Strategy
    group: tuple[int, int] | None = None
    num_pieces: int = 0


def lay_out(plan: BatchPlan, pad_multiple: int, chooser: StrategyChooser,
            dp_rank: int | None = None) -> list[MicroBatchLayout]:
    """Every micro-batch of ``plan`` (given ``dp_rank``: only that replica's) with its trained
    lengths and its one CP strategy."""
    out = []
    for j, (mb, r) in enumerate(zip(plan.microbatches, plan.dp_ranks)):
        if dp_rank is not None and r != dp_rank:
            continue
        seq_lens = packed_seq_lens([p.length for p in mb], pad_multiple)
        out.append(MicroBatchLayout(j, mb, r, seq_lens, chooser(seq_lens)))
    return out


def build_inputs(layouts: list[MicroBatchLayout], dp_rank: int, source: DocumentSource, *,
                 pad_multiple: int, cp_size: int, cp_rank: int) -> list[MicroBatchInput]:
    """This DP rank's micro-batches, collated and sliced for this CP rank."""
    out = []
    for lay in layouts:
        if lay.dp_rank != dp_rank:
            continue
        local, seq_lens = collate_shard(lay.pieces, source, pad_multiple, cp_size, cp_rank,
                                        lay.strategy)
        assert seq_lens == lay.seq_lens, (seq_lens, lay.seq_lens)
        out.append(MicroBatchInput(index=lay.index, seq_lens=lay.seq_lens,
                                   strategy=lay.strategy, num_pieces=len(lay.pieces), **local))
    return out


def group_layout(grp, sp_multiple: int, strategy=None) -> tuple[int, tuple[int, ...], str]:
    """(pad multiple, trained document lengths, CP strategy) of an elastic group: its pieces
    padded to 2 x size x ``sp_multiple`` tokens (one rank: ``sp_multiple``), sharded by
    ``strategy(seq_lens, size)`` (default: per document; one rank: whole, per_seq)."""
    pad = (2 * grp.size if grp.size > 1 else 1) * sp_multiple
    seq_lens = tuple(packed_seq_lens([p.length for p in grp.pieces], pad))
    how = "per_seq" if grp.size == 1 else (
        strategy(seq_lens, grp.size) if strategy else "per_doc")
    return pad, seq_lens, how


def elastic_inputs(slots, pool_index: int, source: DocumentSource, *, sp_multiple: int,
                   strategy=None) -> list[MicroBatchInput]:
    """This pool rank's micro-batch in every slot of an elastic plan (``wlb.elastic.planner``):
    its group's pieces, collated (padded to 2 x size x ``sp_multiple`` tokens) and sharded over
    the group (one rank: whole) by ``strategy(seq_lens, size)`` (default: per document)."""
    out = []
    for j, slot in enumerate(slots):
        grp = next(g for g in slot.groups if g.first <= pool_index < g.first + g.size)
        pad, seq_lens, how = group_layout(grp, sp_multiple, strategy)
        local, _ = collate_shard(list(grp.pieces), source, pad, grp.size,
                                 pool_index - grp.first, how)
        out.append(MicroBatchInput(index=j, seq_lens=seq_lens, strategy=how,
                                   group=(grp.first, grp.size), num_pieces=len(grp.pieces),
                                   **local))
    return out


def plan_predictions(plan: BatchPlan, layouts: list[MicroBatchLayout], cost: CostModel,
                     cp_size: int) -> dict:
    """Cost-model predictions for the iteration (same on every rank).

    The micro-batch and DP figures count the plan's pieces; the CP figures describe the layouts
    that are trained (pad document included), under the strategy each one runs.
    """
    piece_loads = [[cost.doc_workload(p.length) for p in mb] for mb in plan.microbatches]
    loads = [sum(w) for w in piece_loads]
    strategies: Counter = Counter(lay.strategy for lay in layouts)
    cp_imb = []
    if cp_size > 1:
        for lay in layouts:
            seg = segment_arrays(lay.seq_lens, cp_size, lay.strategy)
            w = cost.attn_coef * 2 * seg.pairs + cost.linear_coef * seg.length
            cp_imb.append(imbalance(np.bincount(seg.rank, weights=w, minlength=cp_size)))
    return {
        "work_pred": float(sum(loads)),
        "microbatch_work": [float(x) for x in loads],
        "pp_imbalance_pred": imbalance(loads),
        # the best any packing of these pieces into N micro-batches could do (delay off)
        "pp_imbalance_floor": imbalance_floor([w for mb in piece_loads for w in mb], len(loads)),
        # per-replica sums (1.0 at DP=1)
        "dp_imbalance_pred": imbalance(np.bincount(plan.dp_ranks, weights=loads)),
        "cp_imbalance_pred": sum(cp_imb) / len(cp_imb) if cp_imb else 1.0,
        "cp_strategy": dict(sorted(strategies.items())),
    }
