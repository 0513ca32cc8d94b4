"""The per-iteration plan: global batch -> packer -> micro-batches -> DP ranks.

Every rank builds the same :class:`PlanSchedule` and calls :meth:`next_plan` once per iteration,
so no plan is broadcast; ``BatchPlan.digest()`` lets a run prove that ranks agree.
"""

from __future__ import annotations

import numpy as np

from wlb.config import WLBConfig
from wlb.cost_model import CostModel
from wlb.packing import GlobalBatcher, build_packer
from wlb.packing.autotune import auto_tune_outliers
from wlb.packing.base import Packer
from wlb.packing.types import BatchPlan, assign_dp_ranks


def build_run_packer(
    cfg: WLBConfig, lengths: np.ndarray, num_microbatches: int, seq_length: int,
    cost: CostModel, seed: int,
) -> tuple[Packer, dict]:
    """The packer ``cfg`` asks for, with 'auto' outlier thresholds tuned on ``lengths``.

    Returns:
        (packer, info) where info records the thresholds used and where they came from.
    """
    kw: dict = {"num_microbatches": num_microbatches, "seq_length": seq_length,
                "cost_model": cost}
    info: dict = {"packer": cfg.packing}
    if cfg.packing.startswith("wlb"):
        kw["max_tokens"] = cfg.max_tokens
        if cfg.thresholds == "auto":
            rng = np.random.default_rng(seed + 1)
            sample = rng.choice(lengths, max(1, int(0.3 * len(lengths))), replace=False)
            tuned = auto_tune_outliers(
                sample, num_microbatches=num_microbatches, seq_length=seq_length,
                cost_model=cost, max_tokens=cfg.max_tokens, release="count",
                delay_budget=cfg.delay_budget, seed=seed,
            )
            kw["outlier_thresholds"] = tuned.thresholds
            if cfg.packing == "wlb":
                kw["max_wait"] = min(tuned.max_wait, cfg.max_wait)
            info.update(thresholds=tuned.thresholds, thresholds_from="auto",
                        sim_imbalance=tuned.imbalance_mean, sim_delay=tuned.delay_iters_mean)
        else:
            ths = [] if cfg.thresholds == "none" else list(cfg.thresholds)
            kw["outlier_thresholds"] = ths
            if cfg.packing == "wlb":
                kw["max_wait"] = cfg.max_wait
            info.update(thresholds=ths, thresholds_from=str(cfg.outlier_thresholds))
    return build_packer(cfg.packing, **kw), info


class PlanSchedule:
    """Endless stream of BatchPlans over ``lengths`` (epochs wrap; seeded order per epoch).

    Args:
        lengths: document lengths (tokens).
        packer: a fresh packer (N = micro-batches per iteration over all DP ranks).
        dp_size: DP ranks; micro-batches are dealt N/dp per rank.
        shuffle, seed: seeded document order per epoch.
        balance_dp: deal micro-batches to DP ranks by workload (WLB); False deals them in order
            (stock Megatron: rank r takes micro-batches [r*N/dp, (r+1)*N/dp)).
    """

    def __init__(self, lengths, packer: Packer, dp_size: int, *, shuffle: bool, seed: int,
                 balance_dp: bool) -> None:
        self.packer = packer
        self.dp_size = dp_size
        self.balance_dp = balance_dp
        self.batcher = GlobalBatcher(
            lengths, packer.n * packer.seq_length, split_at_budget=packer.split_at_budget,
            max_piece=packer.max_piece, shuffle=shuffle, seed=seed, wrap_epochs=True,
        )
        # epoch of every consumed piece not yet fully trained: (doc, arrival) -> [[offset, length,
        # epoch, tokens left]]; a list because a batch straddling an epoch boundary can hold the
        # same document twice, and a packer may cut a piece further (megatron's sample cuts)
        self._epochs: dict[tuple[int, int], list[list[int]]] = {}
        #: [epoch, doc, offset, length] of what the last plan consumed and trained (plan log)
        self.last_consumed: list[list[int]] = []
        self.last_trained: list[list[list[int]]] = []

    def next_plan(self) -> BatchPlan:
        step = self.batcher.step
        pieces = self.batcher.next_batch()
        self.last_consumed = []
        for p, ep in zip(pieces, self.batcher.piece_epochs):
            self._epochs.setdefault((p.doc_id, p.arrival), []).append(
                [p.offset, p.length, ep, p.length])
            self.last_consumed.append([ep, p.doc_id, p.offset, p.length])
        mbs = self.packer.pack(pieces)
        self.last_trained = [[[self._pop_epoch(p), p.doc_id, p.offset, p.length] for p in mb]
                             for mb in mbs]
        if self.balance_dp:
            w = self.packer.cost.doc_workload
            ranks = assign_dp_ranks([sum(w(p.length) for p in mb) for mb in mbs], self.dp_size)
        else:
            per = len(mbs) // self.dp_size
            ranks = [j // per for j in range(len(mbs))]
        return BatchPlan(step, mbs, ranks)

    def _find(self, p) -> list[int]:
        for entry in self._epochs[(p.doc_id, p.arrival)]:
            if entry[0] <= p.offset < entry[0] + entry[1] and entry[3] > 0:
                return entry
        raise KeyError(f"piece {p} was never consumed")

    def _pop_epoch(self, p) -> int:
        entry = self._find(p)
        entry[3] -= p.length
        if entry[3] <= 0:
            entries = self._epochs[(p.doc_id, p.arrival)]
            entries.remove(entry)
            if not entries:
                del self._epochs[(p.doc_id, p.arrival)]
        return entry[2]

    def pending_with_epochs(self) -> list[list[int]]:
        """[epoch, doc, offset, length] of every piece the packer still holds."""
        return [[self._find(p)[2], p.doc_id, p.offset, p.length] for p in self.packer.pending()]

    def state_dict(self) -> dict:
        return {"batcher": self.batcher.state_dict(), "packer": self.packer.state_dict(),
                "epochs": [[*k, *e] for k, v in self._epochs.items() for e in v]}

    def load_state_dict(self, state: dict) -> None:
        self.batcher.load_state_dict(state["batcher"])
        self.packer.load_state_dict(state["packer"])
        self._epochs = {}
        for row in state.get("epochs", []):
            self._epochs.setdefault((row[0], row[1]), []).append(list(row[2:]))
