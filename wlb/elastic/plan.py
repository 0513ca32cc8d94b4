"""Elastic CP's vocabulary: groups, slots, plans, their cost and their checks (pure).

A *slot* is one micro-batch step of a pipeline stage's DP x CP pool: its *groups* partition the
pool into aligned power-of-two runs of ranks, each running one packed sequence. The planner
(``wlb.elastic.planner``) chooses them; this module prices them (:class:`ElasticCost`,
:func:`plan_time`) and refuses a plan that would deadlock or lose tokens (:func:`validate_plan`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from wlb.cost_model import CostModel
from wlb.packing.types import Piece


class PlanError(ValueError):
    """Pieces that no group of the pool can hold (the message names the piece)."""


@dataclass(frozen=True)
class ElasticCost:
    """Per-rank time of one group's micro-batch.

    For ``g > 1`` ranks, ``(A / e + B x tokens) / g + C x docs + comm_fixed + comm_coef x tokens
    x (g - 1) / g``, ``A`` the attention part of ``sum(W(d))``, ``B`` and ``C`` the cost model's
    per-token and per-document coefficients and ``e`` the split efficiency: each document's work
    is split over the g ranks (per-document CP sharding), but its attention only ``e`` as well as
    ``1 / g`` (smaller, masked kernel calls) and its per-document overhead not at all (every rank
    runs a piece of every document); then the K/V all-gather of the group's tokens (each rank
    receives the other ranks' share) and its per-micro-batch latency. One rank: ``sum(W(d))``.
    ``tools/calibrate_comm.py`` measures ``e`` and both prices.

    Worked example (``W(d) = 0.01 d^2 + d + 10``, ``e = 0.8``, free communication): [100, 50]
    on one rank costs (100 + 100 + 10) + (25 + 50 + 10) = 295; on two ranks
    (125 / 0.8 + 150) / 2 + 2 x 10 = 173.1 (perfectly split: 147.5).

    Attributes:
        cost: the per-document workload W(d).
        comm_coef: time per token gathered (0: free communication), in W's units.
        comm_fixed: time of a group's collectives however few tokens they carry, in W's units.
        split_efficiency: ``e`` above, in (0, 1] on the machines measured (1: perfect split).
    """

    cost: CostModel
    comm_coef: float = 0.0
    comm_fixed: float = 0.0
    split_efficiency: float = 1.0

    def __post_init__(self) -> None:
        if not self.split_efficiency > 0:
            raise PlanError(f"split efficiency {self.split_efficiency!r} must be > 0")

    def time(self, work: float, tokens: int, g: int, docs: int) -> float:
        """Per-rank time of ``docs`` documents of ``work`` over ``tokens`` tokens on ``g``
        ranks."""
        if g == 1:
            return work
        c = self.cost
        attn = max(work - c.linear_coef * tokens - c.doc_coef * docs, 0.0)
        return ((attn / self.split_efficiency + c.linear_coef * tokens) / g + c.doc_coef * docs
                + self.comm_fixed + self.comm_coef * tokens * (g - 1) / g)

    def group_time(self, lengths, g: int) -> float:
        return self.time(sum(self.cost.doc_workload(d) for d in lengths), sum(lengths), g,
                         len(lengths))


@dataclass(frozen=True)
class Group:
    """``size`` consecutive ranks of the pool from ``first`` (``first % size == 0``) running one
    packed sequence of ``pieces`` (empty: a padding-only micro-batch)."""

    first: int
    size: int
    pieces: tuple[Piece, ...]

    @property
    def tokens(self) -> int:
        return sum(p.length for p in self.pieces)


@dataclass(frozen=True)
class Slot:
    """One micro-batch slot: its groups partition the pool."""

    groups: tuple[Group, ...]


@dataclass
class ElasticPlan:
    """The slots of one iteration and their predicted per-slot times."""

    slots: list[Slot]
    slot_times: list[float]

    def digest(self) -> str:
        rows = [[[g.first, g.size, [[p.doc_id, p.offset, p.length] for p in g.pieces]]
                 for g in s.groups] for s in self.slots]
        return hashlib.sha256(json.dumps(rows, separators=(",", ":")).encode()).hexdigest()[:16]


def critical_path(slot_times: list[float], pp: int = 1) -> float:
    """Iteration time of slots run in lockstep through ``pp`` pipeline stages (1F1B, equal
    stages): every slot once, plus the slowest slot for each extra stage (warm-up and
    cool-down)."""
    return sum(slot_times) + (pp - 1) * max(slot_times, default=0.0)


def plan_time(slots: list[Slot], ec: ElasticCost, pp: int = 1,
              times: list[list[float]] | None = None) -> float:
    """Predicted iteration time of ``slots`` on the pool: a group starts when all its ranks are
    free (its collectives wait for the slowest), a one-rank group as soon as its rank is, and the
    iteration ends with the last rank; plus, as :func:`critical_path`, the slowest slot for each
    extra pipeline stage. ``times``: each slot's :func:`group_times`, if already priced.

    Worked example (DP = 2, CP = 1, ``W(d) = d``): slot 0 runs [3] on rank 0 and [1] on rank 1,
    slot 1 [1] and [3]: the ranks never meet, so the iteration lasts max(3 + 1, 1 + 3) = 4 (in
    lockstep, 3 + 3 = 6). Had slot 1 one group of both ranks with [2, 2] (2 each), it would start
    at 3, when rank 0 is free: 3 + 2 = 5.
    """
    if times is None:
        times = [group_times(s, ec) for s in slots]
    pool = max((g.first + g.size for s in slots for g in s.groups), default=0)
    ready = [0.0] * pool
    for s, t in zip(slots, times):
        advance(ready, s, t)
    return max(ready, default=0.0) + (pp - 1) * max((max(t) for t in times), default=0.0)


def advance(ready: list[float], slot: Slot, times: list[float]) -> list[float]:
    """Run ``slot``, whose groups take ``times``, on the ranks' timelines: ``ready[r]`` (when
    pool rank r is free) is updated in place and returned (:func:`plan_time`'s step)."""
    for g, t in zip(slot.groups, times):
        end = max(ready[g.first:g.first + g.size]) + t
        ready[g.first:g.first + g.size] = [end] * g.size
    return ready


def validate_plan(plan: ElasticPlan, pool: int, pieces) -> None:
    """Refuse a plan that would deadlock or lose tokens, before any collective runs.

    Every slot's groups must partition the pool's ``pool`` ranks into aligned power-of-two
    groups (so every rank runs exactly one micro-batch per slot and every group's collectives
    have all their members), and the plan must train exactly ``pieces``, each once and uncut.

    Raises:
        PlanError: naming the slot and what is wrong.
    """
    for j, slot in enumerate(plan.slots):
        covered = []
        for g in slot.groups:
            if g.size < 1 or g.size & (g.size - 1) or g.first % g.size or g.first < 0:
                raise PlanError(f"slot {j}: group ({g.first}, {g.size}) is not an aligned "
                                "power-of-two group")
            covered += range(g.first, g.first + g.size)
        if sorted(covered) != list(range(pool)):
            raise PlanError(f"slot {j}: its groups cover pool ranks {sorted(covered)}, not each "
                            f"of 0..{pool - 1} once (a rank would wait for a missing peer)")
    trained = sorted(p for s in plan.slots for g in s.groups for p in g.pieces)
    if trained != sorted(pieces):
        raise PlanError(f"the plan trains {len(trained)} pieces "
                        f"({sum(p.length for p in trained)} tokens), not the iteration's "
                        f"{len(pieces)} ({sum(p.length for p in pieces)} tokens) each once")


def fixed_slots(microbatches: list[list[Piece]], dp_ranks: list[int], dp: int, cp: int
                ) -> list[Slot]:
    """Today's fixed layout as slots: in slot m, replica r's CP ranks (``r x cp`` on) run its
    m-th micro-batch."""
    per_rank: list[list[list[Piece]]] = [[] for _ in range(dp)]
    for mb, r in zip(microbatches, dp_ranks):
        per_rank[r].append(mb)
    return [Slot(tuple(Group(r * cp, cp, tuple(mbs[r])) for r in range(dp)))
            for mbs in zip(*per_rank)]


def group_times(slot: Slot, ec: ElasticCost) -> list[float]:
    """Each group's time (:meth:`ElasticCost.group_time`), in the slot's order."""
    return [ec.group_time([p.length for p in g.pieces], g.size) for g in slot.groups]


def slot_time(slot: Slot, ec: ElasticCost) -> float:
    """The slowest group of the slot."""
    return max(group_times(slot, ec))
