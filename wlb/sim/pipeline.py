"""Event simulation of Megatron's 1F1B and interleaved 1F1B pipeline schedules.

Every pipeline rank runs its forward (F) and backward (B) passes in the fixed order megatron-core's
``forward_backward_pipelining_{without,with}_interleaving`` uses; an operation starts when its rank
is free and its input has arrived (F of the previous virtual stage, or B of the next one, plus the
point-to-point transfer time). The makespan is the iteration's pipeline time.

Virtual stage ``v`` (0 .. pp*vpp-1) runs on rank ``v % pp`` as model chunk ``v // pp``.

Worked example (pp=2, vpp=1, 2 micro-batches, every F=1 and B=2, no transfer time)::

    rank 0 order F0 F1 B0 B1 (one warm-up forward): F0 0-1, F1 1-2, B0 4-6, B1 7-9
    rank 1 order F0 B0 F1 B1 (last stage):          F0 1-2, B0 2-4, F1 4-5, B1 5-7
    makespan = 9; an ideal (balanced, bubble-free) pipeline would need 2 * (1 + 2) = 6
"""

from __future__ import annotations

from collections.abc import Sequence


class ScheduleError(ValueError):
    """A schedule that cannot be built (sizes) or deadlocks (a bug)."""


def rank_order(pp: int, rank: int, num_mb: int, vpp: int = 1) -> list[tuple[str, int, int]]:
    """Operations of one pipeline rank, in execution order.

    Args:
        pp: pipeline stages (ranks).
        rank: this rank.
        num_mb: micro-batches in the iteration.
        vpp: model chunks per rank (interleaved schedule when > 1).

    Returns:
        [("F" | "B", micro-batch, chunk)], chunk in 0..vpp-1.
    """
    if pp < 1 or vpp < 1 or num_mb < 1 or not 0 <= rank < pp:
        raise ScheduleError(f"bad schedule sizes pp={pp} rank={rank} num_mb={num_mb} vpp={vpp}")
    if vpp == 1:
        warm = min(pp - rank - 1, num_mb)
        fwd = [("F", j, 0) for j in range(num_mb)]
        bwd = [("B", j, 0) for j in range(num_mb)]
        order = fwd[:warm]
        for i in range(num_mb - warm):
            order += [fwd[warm + i], bwd[i]]
        return order + bwd[num_mb - warm:]
    total = num_mb * vpp
    # groups of pp micro-batches walk through the chunks in turn; a short remainder joins the
    # last group. Example pp=2, vpp=2, 4 micro-batches: (0,c0) (1,c0) (0,c1) (1,c1) (2,c0) ...
    table: list[tuple[int, int]] = []
    for g in range(0, num_mb, pp):
        ids = range(g, num_mb) if g + pp >= num_mb else range(g, g + pp)
        table += [(j, c) for c in range(vpp) for j in ids]
        if g + pp >= num_mb:
            break

    def fwd_op(k: int) -> tuple[str, int, int]:
        return "F", table[k][0], table[k][1]

    def bwd_op(k: int) -> tuple[str, int, int]:
        return "B", table[k][0], vpp - 1 - table[k][1]

    warm = min((pp - rank - 1) * 2 + (vpp - 1) * pp, total)
    order = [fwd_op(k) for k in range(warm)]
    for i in range(total - warm):
        order += [fwd_op(warm + i), bwd_op(i)]
    return order + [bwd_op(k) for k in range(total - warm, total)]


def simulate_pipeline(
    fwd: Sequence[Sequence[float]],
    bwd: Sequence[Sequence[float]],
    pp: int,
    vpp: int = 1,
    p2p: Sequence[float] | float = 0.0,
) -> tuple[float, list[float]]:
    """Makespan of one iteration's pipeline.

    Args:
        fwd, bwd: ``[micro-batch][virtual stage]`` seconds, pp*vpp stages each.
        pp, vpp: pipeline ranks and chunks per rank.
        p2p: transfer seconds between consecutive virtual stages, per micro-batch (or one value).

    Returns:
        (makespan, busy seconds of every rank).
    """
    m = len(fwd)
    stages = pp * vpp
    if len(bwd) != m or any(len(r) != stages for r in (*fwd, *bwd)):
        raise ScheduleError(f"fwd/bwd must be [{m}][{stages}] (pp={pp} x vpp={vpp})")
    hop = [float(p2p)] * m if isinstance(p2p, (int, float)) else [float(x) for x in p2p]
    orders = [rank_order(pp, r, m, vpp) for r in range(pp)]
    pos = [0] * pp
    clock = [0.0] * pp
    busy = [0.0] * pp
    done: dict[tuple[str, int, int], float] = {}  # (kind, mb, virtual stage) -> finish time
    remaining = sum(len(o) for o in orders)
    while remaining:
        progressed = False
        for r in range(pp):
            while pos[r] < len(orders[r]):
                kind, j, chunk = orders[r][pos[r]]
                v = chunk * pp + r
                if kind == "F":
                    dep = ("F", j, v - 1) if v > 0 else None
                    dur = fwd[j][v]
                else:
                    dep = ("B", j, v + 1) if v < stages - 1 else ("F", j, v)
                    dur = bwd[j][v]
                if dep is not None and dep not in done:
                    break
                ready = 0.0
                if dep is not None:
                    ready = done[dep] + (hop[j] if dep[2] != v else 0.0)
                start = max(clock[r], ready)
                clock[r] = start + dur
                busy[r] += dur
                done[(kind, j, v)] = clock[r]
                pos[r] += 1
                remaining -= 1
                progressed = True
        if not progressed:
            raise ScheduleError(f"pipeline schedule deadlocked (pp={pp}, vpp={vpp}, mb={m})")
    return max(clock), busy
