"""Drive a packer over a document stream and measure balance, delay, speed and the ledger."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from wlb.metrics import imbalance, summarize
from wlb.packing.base import Packer
from wlb.packing.ledger import TokenLedger
from wlb.packing.schedule import PlanSchedule
from wlb.packing.types import BatchPlan, microbatch_workloads


@dataclass
class SimResult:
    """Figures of one simulated run (see :meth:`summary` for the reported keys)."""

    packer: str
    imbalances: list[float] = field(default_factory=list)
    pack_ms: list[float] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    delay_token_sum: float = 0.0
    delay_max: int = 0
    trained_tokens: int = 0
    flush_batches: int = 0
    ledger: dict = field(default_factory=dict)
    data_exhausted: bool = False

    def summary(self) -> dict:
        imb = summarize(self.imbalances)
        return {
            "packer": self.packer,
            "num_batches": len(self.imbalances),
            "imbalance_mean": imb["mean"],
            "imbalance_p50": imb["p50"],
            "imbalance_p99": imb["p99"],
            "imbalance_max": imb["max"],
            "delay_iters_mean": self.delay_token_sum / max(self.trained_tokens, 1),
            "delay_iters_max": self.delay_max,
            "pack_ms_mean": float(np.mean(self.pack_ms)) if self.pack_ms else 0.0,
            "pack_ms_max": float(np.max(self.pack_ms)) if self.pack_ms else 0.0,
            "tokens_per_batch_mean": float(np.mean(self.tokens)) if self.tokens else 0.0,
            "docs_pending_at_end": self.ledger.get("docs_pending", 0),
            "tokens_pending_at_end": self.ledger.get("pending_tokens", 0),
            "flush_batches": self.flush_batches,
            "data_exhausted": self.data_exhausted,
            # the ledger's own sum: every consumed token was trained or is still held
            "ledger_ok": bool(self.ledger) and self.ledger["consumed_tokens"]
            == self.ledger["trained_tokens"] + self.ledger["pending_tokens"],
        }


def simulate(
    lengths: Sequence[int] | np.ndarray,
    packer: Packer,
    num_batches: int,
    *,
    shuffle: bool = False,
    seed: int = 0,
    dp_size: int = 1,
    flush: bool = False,
    on_plan: Callable[[BatchPlan], None] | None = None,
) -> SimResult:
    """Run ``num_batches`` global batches (fewer if the data ends) through ``packer``.

    A global batch takes N x seq_length tokens of documents (see GlobalBatcher). Every plan is
    recorded in a token ledger, checked at the end (raises LedgerError on any lost or repeated
    token). With ``flush`` the held-back pieces are packed into extra batches at the end (epoch
    end); those are counted in delay but not in the imbalance series.

    Args:
        lengths: document lengths in file order.
        packer: a fresh packer.
        num_batches: global batches to draw.
        shuffle, seed: seeded document order instead of file order.
        dp_size: DP ranks the N micro-batches are dealt to (recorded in the plan).
        flush: drain the packer at the end.
        on_plan: called with every BatchPlan (e.g. to dump it).
    """
    if num_batches <= 0:
        raise ValueError(f"num_batches must be > 0, got {num_batches}")
    schedule = PlanSchedule(lengths, packer, dp_size, shuffle=shuffle, seed=seed,
                            balance_dp=True, wrap_epochs=False)
    ledger = TokenLedger()
    res = SimResult(packer=packer.name)

    def record(plan: BatchPlan, in_series: bool) -> None:
        for mb in plan.microbatches:
            ledger.train(mb)
            for p in mb:
                d = plan.step - p.arrival
                res.delay_token_sum += d * p.length
                res.delay_max = max(res.delay_max, d)
                res.trained_tokens += p.length
        if in_series:
            res.imbalances.append(imbalance(microbatch_workloads(plan.microbatches, packer.cost)))
            res.tokens.append(plan.num_tokens)
        if on_plan is not None:
            on_plan(plan)

    batcher, step = schedule.batcher, 0
    while step < num_batches:
        plan = schedule.next_plan()
        if plan is None:
            res.data_exhausted = True
            break
        ledger.consume(schedule.last_pieces)
        res.pack_ms.append(schedule.last_pack_ms)
        # The batch during which the data ran out is short (stock Megatron drops it): it is
        # trained and ledgered, but kept out of the balance series.
        partial = batcher.exhausted and sum(
            p.length for p in schedule.last_pieces) < batcher.budget
        record(plan, not partial)
        step += 1
    if flush:
        while True:
            mbs = packer.flush()
            if not mbs:
                break
            record(BatchPlan(step, mbs, schedule.deal(mbs)), False)
            res.flush_batches += 1
            step += 1
    res.ledger = ledger.check(packer.pending())
    return res
