"""WLB-LLM Algorithm 1: workload-aware variable-length packing with outlier delay (paper §4)."""

from __future__ import annotations

from collections.abc import Sequence

from wlb.cost_model import CostModel
from wlb.packing.base import Packer, default_max_tokens, register_packer
from wlb.packing.placement import Bins, fill_leftovers, greedy_place, refine
from wlb.packing.queues import OutlierQueues
from wlb.packing.release import match_release
from wlb.packing.types import MicroBatch, Piece

PLACEMENTS = ("greedy", "refine")
RELEASES = ("count", "match")


class WLBPacker(Packer):
    """Variable-length micro-batches capped at ``max_tokens`` (S_max), balanced by workload.

    Per global batch (Algorithm 1): outliers (length >= L_1) go to their FIFO level; every level
    holding >= N releases N; new pieces are sorted by length descending and placed after the
    carry-over of the previous batch, each into the min-workload micro-batch if it fits, else the
    min-token one, else carried over again.

    ``placement="refine"`` (our default, beyond the paper) then runs a move/swap local search
    between the heaviest and lighter micro-batches and re-tries carried pieces wherever they fit
    without raising the maximum. ``placement="greedy", strict=True`` is the paper verbatim.

    Args:
        num_microbatches, seq_length, cost_model: see :class:`Packer`.
        max_tokens: S_max, the token cap of a micro-batch (default: ``default_max_tokens``).
        outlier_thresholds: ascending L_1 < L_2 < ...; empty disables outlier delay.
        placement: "greedy" (paper) or "refine".
        strict: the paper's strict ``<`` capacity test (pieces are then cut at S_max - 1).
        release: "count" (paper: a level holding N releases N) or "match" (experimental,
            see :mod:`wlb.packing.release`).
        balance_tol: slot tolerance of the match release.
        max_wait: a queued piece waiting this many iterations releases its level (fewer than
            N pieces); bounds delay and queue memory. None: unbounded, as in the paper.
    """

    name = "wlb"

    def __init__(
        self,
        num_microbatches: int,
        seq_length: int,
        cost_model: CostModel,
        *,
        max_tokens: int | None = None,
        outlier_thresholds: Sequence[int] = (),
        placement: str = "refine",
        strict: bool = False,
        release: str = "count",
        balance_tol: float = 0.01,
        max_wait: int | None = 32,
    ) -> None:
        super().__init__(num_microbatches, seq_length, cost_model)
        cap = int(max_tokens) if max_tokens is not None else default_max_tokens(seq_length)
        if cap < seq_length:
            raise ValueError(f"max_tokens={cap} is below seq_length={seq_length}")
        if placement not in PLACEMENTS:
            raise ValueError(f"placement={placement!r}; choose from {PLACEMENTS}")
        if release not in RELEASES:
            raise ValueError(f"release={release!r}; choose from {RELEASES}")
        if balance_tol < 0:
            raise ValueError(f"balance_tol={balance_tol} must be >= 0")
        if max_wait is not None and max_wait < 1:
            raise ValueError(f"max_wait={max_wait} must be >= 1 iteration (or None: unbounded)")
        self.release = release
        self.balance_tol = balance_tol
        self.max_wait = max_wait
        self.step = 0
        self._cap = cap
        self.placement = placement
        self.strict = strict
        self.queues = OutlierQueues(outlier_thresholds, num_microbatches)
        self.carry: list[Piece] = []

    @property
    def max_tokens(self) -> int:
        return self._cap

    @property
    def max_piece(self) -> int:
        return self._cap - 1 if self.strict else self._cap

    def _place(self, new: list[Piece], seeds: list[list[Piece]] = ()) -> list[MicroBatch]:
        w = self.cost.doc_workload
        new.sort(key=lambda p: (-p.length, p.doc_id, p.offset))
        order = self.carry + new
        bins = Bins(self.n, self._cap)
        for j, group in enumerate(seeds):
            for p in group:
                bins.add(j, p, w(p.length))
        left = greedy_place(order, [w(p.length) for p in order], bins, strict=self.strict)
        if self.placement == "refine":
            refine(bins, max_rounds=4 * self.n)
            left = fill_leftovers(bins, left, self.cost)
        self.carry = left
        return bins.pieces

    def pack(self, pieces: list[Piece]) -> list[MicroBatch]:
        new = [p for p in pieces if not self.queues.push(p)]
        seeds: list[list[Piece]] = []
        if self.release == "count":
            new.extend(self.queues.pop_ready())
            if self.max_wait:
                new.extend(self.queues.pop_overdue(self.step, self.max_wait))
        else:
            seeds = self._match(new)
        out = self._place(new, seeds)
        self.step += 1
        return out

    def _match(self, base: list[Piece]) -> list[list[Piece]]:
        pool = self.queues.pending()
        if not pool:
            return []
        w = self.cost.doc_workload
        tokens = sum(p.length for p in base) + sum(p.length for p in self.carry)
        work = sum(w(p.length) for p in base) + sum(w(p.length) for p in self.carry)
        rho = work / tokens if tokens else self.cost.linear_coef
        groups = match_release(
            [w(p.length) for p in pool],
            [p.length for p in pool],
            [self.step - p.arrival for p in pool],
            n=self.n,
            cap=self._cap,
            rho=rho,
            tol=self.balance_tol,
            max_wait=self.max_wait or 10**9,
        )
        chosen = [[pool[i] for i in g] for g in groups]
        self.queues.remove({i for g in groups for i in g}, pool)
        return chosen

    def flush(self) -> list[MicroBatch]:
        if not self.carry and not len(self.queues):
            return []
        return self._place(self.queues.flush())

    def pending(self) -> list[Piece]:
        return self.carry + self.queues.pending()

    def state_dict(self) -> dict:
        return {
            "name": self.name,
            "step": self.step,
            "carry": [list(p) for p in self.carry],
            "queues": self.queues.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.step = int(state["step"])
        # "remained": the key of checkpoints written before the carry-over got one name
        carry = state["carry"] if "carry" in state else state["remained"]
        self.carry = [Piece(*p) for p in carry]
        self.queues.load_state_dict(state["queues"])


@register_packer("wlb")
def _wlb(**kw) -> WLBPacker:
    return WLBPacker(**kw)


@register_packer("wlb-paper")
def _wlb_paper(**kw) -> WLBPacker:
    """Algorithm 1 exactly as printed: greedy placement, strict ``<`` capacity test."""
    kw.setdefault("placement", "greedy")
    kw.setdefault("strict", True)
    kw.setdefault("release", "count")
    kw.setdefault("max_wait", None)
    p = WLBPacker(**kw)
    p.name = "wlb-paper"
    return p
