"""Per-iteration micro-batches for the schedule, CP strategy choice, predicted imbalance."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch

from wlb.cost_model import CostModel
from wlb.cp.selector import KernelTable, choose_strategy
from wlb.cp.shard import ALL_STRATEGIES, STRATEGIES, rank_segments
from wlb.data.collate import PackedMicroBatch, collate, shard_for_cp
from wlb.data.sources import DocumentSource
from wlb.metrics import imbalance, imbalance_floor
from wlb.packing.types import BatchPlan, packed_doc_lens

_STRATEGY = {"per-seq": "per_seq", "per-doc": "per_doc", "mixed": "mixed"}


@dataclass
class MicroBatchInput:
    """What ``forward_step`` feeds the model for one micro-batch on this rank.

    Attributes:
        index: micro-batch index in the iteration's plan (0..N-1).
        tokens, labels, loss_mask, positions: [t_local] tensors (this CP rank's rows).
        doc_lens: document lengths of the whole micro-batch (incl. a pad document).
        strategy: CP sharding used ("per_seq" | "per_doc" | "mixed").
    """

    index: int
    tokens: torch.Tensor
    labels: torch.Tensor
    loss_mask: torch.Tensor
    positions: torch.Tensor
    doc_lens: tuple[int, ...]
    strategy: str


class StrategyChooser:
    """Maps the ``--wlb-cp-sharding`` choice to a strategy per micro-batch."""

    def __init__(self, mode: str, cp_size: int, table: KernelTable | None) -> None:
        self.mode, self.cp, self.table = mode, cp_size, table

    def __call__(self, doc_lens: tuple[int, ...]) -> str:
        if self.cp == 1:
            return "per_seq"  # identical layouts at CP=1
        if not self.mode.startswith("adaptive"):
            return _STRATEGY[self.mode]
        candidates = STRATEGIES if self.mode == "adaptive-paper" else ALL_STRATEGIES
        return choose_strategy(doc_lens, self.cp, self.table, candidates)[0]


def build_inputs(plan: BatchPlan, dp_rank: int, source: DocumentSource, *, pad_multiple: int,
                 cp_size: int, cp_rank: int, chooser: StrategyChooser) -> list[MicroBatchInput]:
    """This DP rank's micro-batches of ``plan``, collated and sliced for this CP rank."""
    out = []
    for j, (mb, r) in enumerate(zip(plan.microbatches, plan.dp_ranks)):
        if r != dp_rank:
            continue
        packed = collate(mb, source, pad_multiple) if mb else _empty(source, pad_multiple)
        strategy = chooser(packed.doc_lens)
        local = shard_for_cp(packed, cp_size, cp_rank, strategy)
        out.append(MicroBatchInput(index=j, doc_lens=packed.doc_lens, strategy=strategy,
                                   **local))
    return out


def _empty(source: DocumentSource, pad_multiple: int):
    """A padding-only micro-batch (a packer may leave one empty); it trains nothing."""
    (n,) = packed_doc_lens([], pad_multiple)
    z = torch.full((n,), source.eod, dtype=torch.long)
    return PackedMicroBatch(z, z.clone(), torch.zeros(n), torch.arange(n), (n,), n)


def plan_predictions(plan: BatchPlan, cost: CostModel, cp_size: int,
                     chooser: StrategyChooser) -> dict:
    """Cost-model predictions for the iteration (same on every rank)."""
    piece_loads = [[cost.doc_workload(p.length) for p in mb] for mb in plan.microbatches]
    loads = [sum(w) for w in piece_loads]
    strategies: Counter = Counter()
    cp_imb = []
    for mb in plan.microbatches:
        lens = tuple(p.length for p in mb) or (2,)
        s = chooser(lens)
        strategies[s] += 1
        if cp_size > 1:
            work = []
            for r in range(cp_size):
                segs = [x for half in rank_segments(lens, cp_size, r, s) for x in half]
                work.append(sum(cost.attn_coef * 2 * x.pairs + cost.linear_coef * x.length
                                for x in segs))
            cp_imb.append(imbalance(work))
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
