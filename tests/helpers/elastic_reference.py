"""Elastic CP's slot grouping as it was first written: every small piece tried on every group
with one Python call per group, and every group priced again at each widening step (the own
groups' sizes and their halving when too wide come from the planner's ``_own_group_sizes``
and ``_halve_widest``, which did not change).

An independent reference for :func:`wlb.elastic.planner.group_slot`, whose placement with
the one-rank groups as arrays must make exactly the same groups
(``tests/elastic/test_planner_arrays.py``); and the re-sliced plan's dealing as first written
(:func:`slot_by_work`), for ``wlb.elastic.planner._slot_by_work``.
"""

from __future__ import annotations

from wlb.elastic.plan import ElasticCost, Group, Slot, slot_time
from wlb.elastic.planner import _halve_widest, _heavy_first, _own_group_sizes
from wlb.packing.types import Piece


def group_slot(pieces: list[Piece], pool: int, rank_tokens: int, ec: ElasticCost) -> Slot:
    """The groups of one slot, by the rules of ``wlb.elastic.planner.priced_group_slot``'s
    docstring, with every group priced again wherever it is compared."""
    order = _heavy_first(pieces, ec.cost)
    work = [ec.cost.doc_workload(p.length) for p in order]
    big = _own_group_sizes(order, work, pool, rank_tokens, ec)
    small = [i for i in range(len(order)) if i not in big]

    def layout(sizes: dict[int, int]) -> Slot | None:
        rest = pool - sum(sizes.values())
        if rest < 0:
            return None
        groups: list[list] = []  # [first, size, piece indices, work, tokens]
        first = 0
        for i in sorted(sizes, key=lambda i: (-sizes[i], i)):
            groups.append([first, sizes[i], [i], work[i], order[i].length])
            first += sizes[i]
        groups += [[first + k, 1, [], 0.0, 0] for k in range(rest)]
        for i in small:
            room = [gr for gr in groups if gr[4] + order[i].length <= gr[1] * rank_tokens]
            if not room:
                return None
            gr = min(room, key=lambda gr: (ec.time(gr[3] + work[i], gr[4] + order[i].length,
                                                   gr[1], len(gr[2]) + 1), gr[0]))
            gr[2].append(i)
            gr[3] += work[i]
            gr[4] += order[i].length
        return Slot(tuple(Group(f, g, tuple(order[i] for i in idx)) for f, g, idx, _, _ in groups))

    while (slot := layout(big)) is None:  # too many ranks asked
        _halve_widest(big, order, pool, rank_tokens)
    while True:  # widen the slowest own group while it shortens the slot
        slowest = max(slot.groups, key=lambda g: (ec.group_time([p.length for p in g.pieces],
                                                                g.size), -g.first))
        own = [i for i in big if slowest.pieces[:1] == (order[i],)]
        if not own:
            return slot
        trial = layout({**big, own[0]: big[own[0]] * 2})
        if trial is None or slot_time(trial, ec) >= slot_time(slot, ec):
            return slot
        big[own[0]] *= 2
        slot = trial


def slot_by_work(pieces: list[Piece], slots: int, cap: int, cost) -> list[list[Piece]] | None:
    """The re-sliced plan's dealing as first written: each piece, heaviest first, to the slot
    with the least work among those with room (then the lowest), found by a scan of all."""
    load, tokens = [0.0] * slots, [0] * slots
    out: list[list[Piece]] = [[] for _ in range(slots)]
    for p in sorted(pieces, key=lambda p: (-cost.doc_workload(p.length), p.doc_id, p.offset)):
        room = [j for j in range(slots) if tokens[j] + p.length <= cap]
        if not room:
            return None
        j = min(room, key=lambda k: (load[k], k))
        out[j].append(p)
        load[j] += cost.doc_workload(p.length)
        tokens[j] += p.length
    return out
