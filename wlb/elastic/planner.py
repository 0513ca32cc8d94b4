"""Elastic context parallelism, the plan: per micro-batch slot, the DP x CP ranks of a pipeline
stage cut into aligned groups of power-of-two sizes, each running one packed sequence.

All DP x CP ranks of a stage hold the same weights and their gradients are summed, so any
assignment of the iteration's pieces to them trains the same step (the loss stays the per-token
loss over the global batch). A document heavier than a rank's fair share gets a group larger
than CP (ranks borrowed from other DP replicas); short documents run on groups of one rank, with
no K/V all-gather at all. Pure functions of the pieces' lengths: every rank computes the same
plan.

Worked example (DP = 2 x CP = 2: a pool of 4 ranks of 100 tokens, ``W(d) = d^2 / 100``): slot
0 holds replica 0's micro-batch [200] and replica 1's [50, 50]. Fixed, the 200 runs on its
replica's two ranks: 400 / 2 = 200, and the slot lasts 200. Elastic, the 200 is heavier than
twice a rank's fair share ((400 + 25 + 25) / 4 = 112.5): it gets two ranks of its own and the
50s a rank each (slot 200); doubling it to the whole pool, with the 50s packed into its
sequence (300 tokens <= 4 x 100), gives ``Group(0, 4, [200, 50, 50])``: (400 + 50) / 4 = 112.5.
"""

from __future__ import annotations

import bisect
import contextlib
from math import inf

import numpy as np

from wlb.cost_model import CostModel
from wlb.elastic.plan import (
    ElasticCost,
    ElasticPlan,
    Group,
    PlanError,
    Slot,
    advance,
    fixed_slots,
    group_times,
    plan_time,
)
from wlb.packing.types import Piece


def pow2_floor(x: float) -> int:
    """Largest power of two <= x (1 for x < 2)."""
    g = 1
    while g * 2 <= x:
        g *= 2
    return g


def pow2_ceil(x: float) -> int:
    """Smallest power of two >= x (1 for x <= 1)."""
    g = 1
    while g < x:
        g *= 2
    return g


def _heavy_first(pieces, cost: CostModel) -> list[Piece]:
    return sorted(pieces, key=lambda p: (-cost.doc_workload(p.length), p.doc_id, p.offset))


def _own_group_sizes(order: list[Piece], work: list[float], pool: int, rank_tokens: int,
                     ec: ElasticCost) -> dict[int, int]:
    """Index in ``order`` -> own group size, for the pieces heavier than a rank's fair share or
    longer than one rank holds: what their tokens need, widened up to their share while that
    shortens them (communication included)."""
    fair = sum(work) / pool
    big: dict[int, int] = {}
    for i, p in enumerate(order):
        need = pow2_ceil(p.length / rank_tokens)
        share = work[i] / fair if fair else 0.0
        if need > 1 or share >= 1:
            g = need
            while g * 2 <= pow2_floor(share) and (ec.time(work[i], p.length, g * 2, 1)
                                                  < ec.time(work[i], p.length, g, 1)):
                g *= 2
            big[i] = g
    return big


def _halve_widest(big: dict[int, int], order: list[Piece], pool: int, rank_tokens: int) -> None:
    """Halve (in place) the widest own group that its tokens allow to shrink (the highest index
    of equals: the lightest piece).

    Raises:
        PlanError: none can shrink: the pieces do not fit ``pool`` ranks.
    """
    fit = [i for i in big if big[i] > pow2_ceil(order[i].length / rank_tokens)]
    if not fit:
        raise PlanError(f"the slot's {len(order)} pieces ({sum(p.length for p in order)} "
                        f"tokens) do not fit {pool} ranks of {rank_tokens} tokens")
    i = max(fit, key=lambda i: (big[i], -i))
    big[i] //= 2


def group_slot(pieces: list[Piece], pool: int, rank_tokens: int, ec: ElasticCost) -> Slot:
    """The groups of one slot (:func:`priced_group_slot` without the times)."""
    return priced_group_slot(pieces, pool, rank_tokens, ec)[0]


def priced_group_slot(pieces: list[Piece], pool: int, rank_tokens: int, ec: ElasticCost
                      ) -> tuple[Slot, list[float]]:
    """The groups of one slot, and their times (:func:`wlb.elastic.plan.group_times`).

    Pieces heavier than a rank's fair share (or longer than one rank holds) get a group of their
    own of up to ``pow2_floor(share)`` ranks (at least what their tokens need; no wider than
    shortens the piece, communication included), laid out largest first
    so that every group is aligned; the other ranks are one-rank groups. The remaining
    pieces, heaviest first, join the group (own or one-rank) whose time they raise least, within
    its tokens. Then, while it shortens the slot, the slowest own group doubles (taking
    one-rank groups' ranks; their pieces are placed again).

    Raises:
        PlanError: no grouping of ``pool`` ranks holds the pieces' tokens.
    """
    order = _heavy_first(pieces, ec.cost)
    work = [ec.cost.doc_workload(p.length) for p in order]
    big = _own_group_sizes(order, work, pool, rank_tokens, ec)
    small = [i for i in range(len(order)) if i not in big]
    lin, per_doc = ec.cost.linear_coef, ec.cost.doc_coef
    eff, fixed, coef = ec.split_efficiency, ec.comm_fixed, ec.comm_coef

    def layout(sizes: dict[int, int]
               ) -> tuple[list[int], list[int], list[list[int]], list[float]] | None:
        """The slot with these own groups, as (own pieces' indices in group order, group
        sizes, members' indices, group times), or None if it does not fit."""
        rest = pool - sum(sizes.values())
        if rest < 0:
            return None
        own = sorted(sizes, key=lambda i: (-sizes[i], i))  # widest first: aligned
        # own groups as lists (few): size, piece indices, work, tokens; they come first
        o_size = [sizes[i] for i in own]
        o_members, o_load, o_tokens = [[i] for i in own], [work[i] for i in own], \
            [order[i].length for i in own]
        # the one-rank groups after them (their time is their work), also kept by load
        s_members: list[list[int]] = [[] for _ in range(rest)]
        s_load, s_tokens = [0.0] * rest, [0] * rest
        by_load = [(0.0, j) for j in range(rest)]
        o_docs = [1] * len(own)
        for i in small:  # to the group it slows least (then the lowest first), within its room
            d, w = order[i].length, work[i]
            best_t, best_k = inf, -1
            for k, g in enumerate(o_size):  # ElasticCost.time, inlined (the same floats)
                tokens = o_tokens[k] + d
                if tokens <= g * rank_tokens:
                    load = o_load[k] + w
                    if g == 1:
                        t = load
                    else:
                        docs = o_docs[k] + 1
                        attn = max(load - lin * tokens - per_doc * docs, 0.0)
                        t = ((attn / eff + lin * tokens) / g + per_doc * docs + fixed
                             + coef * tokens * (g - 1) / g)
                    if t < best_t:
                        best_t, best_k = t, k
            # the lightest one-rank group with room (by_load ascending; ties: lowest index)
            t1, j1 = inf, -1
            for load, j in by_load:
                t = load + w
                if t > t1:
                    break
                if s_tokens[j] + d <= rank_tokens and (t < t1 or j < j1):
                    t1, j1 = t, j
            if t1 < best_t:  # (a tie goes to the own group: its first rank is lower)
                j = j1
                del by_load[bisect.bisect_left(by_load, (s_load[j], j))]
                s_members[j].append(i)
                s_load[j] += w
                s_tokens[j] += d
                bisect.insort(by_load, (s_load[j], j))
            elif best_k < 0:
                return None
            else:
                o_members[best_k].append(i)
                o_load[best_k] += w
                o_tokens[best_k] += d
                o_docs[best_k] += 1
        # each group's ElasticCost.group_time, from the sums made on the way (the same
        # additions in the same order, so the same floats)
        times = [ec.time(o_load[k], o_tokens[k], g, o_docs[k])
                 for k, g in enumerate(o_size)] + s_load
        return own, o_size + [1] * rest, o_members + s_members, times

    while (laid := layout(big)) is None:  # too many ranks asked
        _halve_widest(big, order, pool, rank_tokens)
    while True:  # widen the slowest own group while it shortens the slot
        own, sizes, members, times = laid
        slowest = max(times)
        k = times.index(slowest)  # the first of equals: groups are in rank order
        if k >= len(own):  # a one-rank group
            break
        trial = layout({**big, own[k]: big[own[k]] * 2})
        if trial is None or max(trial[3]) >= slowest:
            break
        big[own[k]] *= 2
        laid = trial
    firsts = np.cumsum(sizes) - sizes
    return Slot(tuple(Group(int(f), int(g), tuple(order[i] for i in idx))
                      for f, g, idx in zip(firsts, sizes, members))), times


def _slot_by_work(pieces: list[Piece], slots: int, cap: int, cost: CostModel
                  ) -> list[list[Piece]] | None:
    """Pieces, heaviest first, to the slot with the least work and ``cap`` tokens of room (then
    the lowest)."""
    tokens = [0] * slots
    out: list[list[Piece]] = [[] for _ in range(slots)]
    by_load = [(0.0, j) for j in range(slots)]  # (work, slot), ascending
    for w, p in sorted(((cost.doc_workload(p.length), p) for p in pieces),
                       key=lambda c: (-c[0], c[1].doc_id, c[1].offset)):
        at = next((n for n, (_, j) in enumerate(by_load) if tokens[j] + p.length <= cap), None)
        if at is None:
            return None
        load, j = by_load.pop(at)
        out[j].append(p)
        tokens[j] += p.length
        bisect.insort(by_load, (load + w, j))
    return out


def plan_elastic(microbatches: list[list[Piece]], dp_ranks: list[int], *, dp: int, cp: int,
                 rank_tokens: int, ec: ElasticCost, pp: int = 1) -> ElasticPlan:
    """The fastest (by :func:`plan_time`) of three plans of the iteration:

    * **fixed**: today's layout (:func:`fixed_slots`);
    * **regrouped**: slot m holds the m-th micro-batch of every replica (the packer and the DP
      dealing balanced them); slot by slot, :func:`group_slot` regroups its pieces over the
      pool, kept where that ends the slot earlier on the ranks' timelines than the fixed slot
      (replicas that never share a group run on unsynchronised);
    * **re-sliced**: all pieces dealt to the slots by work (heaviest first, least-loaded slot
      with room), then grouped; only when every slot can be grouped.

    Args:
        microbatches, dp_ranks: the iteration's plan (``wlb.packing.types.BatchPlan``).
        dp, cp: the layout; the pool is ``dp x cp`` ranks of a pipeline stage.
        rank_tokens: tokens one rank holds (S_max / CP).
        ec: the group cost.
        pp: pipeline stages (the objective's warm-up term).
    """
    pool = dp * cp
    fixed = fixed_slots(microbatches, dp_ranks, dp, cp)
    fixed_times = [group_times(s, ec) for s in fixed]
    regrouped: list[tuple[Slot, list[float]]] = []
    ready = [0.0] * pool  # the pool's timelines after ``regrouped`` (plan_time's, step by step)
    for slot, times in zip(fixed, fixed_times):
        cands = [(slot, times)]
        with contextlib.suppress(PlanError):
            cands.append(priced_group_slot([p for g in slot.groups for p in g.pieces], pool,
                                           rank_tokens, ec))
        # each candidate with the timelines after it; the fixed slot wins a tie
        best, ready = min(((c, advance(list(ready), *c)) for c in cands),
                          key=lambda c: (max(c[1], default=0.0), c[0][0] is not slot))
        regrouped.append(best)
    plans = [list(zip(fixed, fixed_times)), regrouped]
    pieces = [p for mb in microbatches for p in mb]
    sliced = _slot_by_work(pieces, len(fixed), pool * rank_tokens, ec.cost)
    if sliced is not None:
        with contextlib.suppress(PlanError):
            plans.append([priced_group_slot(ps, pool, rank_tokens, ec) for ps in sliced])
    best = min(plans, key=lambda plan: plan_time(  # the first of equals
        [s for s, _ in plan], ec, pp, times=[t for _, t in plan]))
    return ElasticPlan([s for s, _ in best], [max(t) for _, t in best])
