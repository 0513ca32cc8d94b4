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
    elif cfg.max_tokens is not None and cfg.packing != "megatron":
        raise ValueError(f"--wlb-max-tokens applies to wlb packers, not {cfg.packing!r}")
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

    def next_plan(self) -> BatchPlan:
        step = self.batcher.step
        mbs = self.packer.pack(self.batcher.next_batch())
        if self.balance_dp:
            w = self.packer.cost.doc_workload
            ranks = assign_dp_ranks([sum(w(p.length) for p in mb) for mb in mbs], self.dp_size)
        else:
            per = len(mbs) // self.dp_size
            ranks = [j // per for j in range(len(mbs))]
        return BatchPlan(step, mbs, ranks)

    def state_dict(self) -> dict:
        return {"batcher": self.batcher.state_dict(), "packer": self.packer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.batcher.load_state_dict(state["batcher"])
        self.packer.load_state_dict(state["packer"])
