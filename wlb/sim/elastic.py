"""Elastic CP in the cluster simulator: the plan's slots, each set of joined ranks on its own.

Every set of pool ranks that the elastic plan's groups join (``wlb.elastic.planner``) runs the
plan's slots together, other sets on their own: a group of g pool ranks runs its micro-batch as
a CP = g micro-batch would (the CP strategy the selector picks for CP = g, the K/V all-gather
over the g ranks, whose link is the one a CP = g group of TP x g ranks would use: it crosses
nodes when TP x g does), and a slot lasts, at every pipeline stage, as long as the set's slowest
group. The pipeline runs the slots as micro-batches. The planner prices the all-gather as
training's ``tools/calibrate_comm.py`` does, from the simulated links (:func:`comm_price`).
"""

from __future__ import annotations

from dataclasses import replace

from wlb.config import cp_candidates
from wlb.cost_model import CostModel
from wlb.cp.selector import StrategyChooser
from wlb.elastic.plan import ElasticCost
from wlb.elastic.planner import plan_elastic
from wlb.metrics import imbalance
from wlb.packing.base import default_max_tokens
from wlb.packing.types import packed_seq_lens
from wlb.parallel import ParallelDims
from wlb.sim.hardware import Hardware
from wlb.sim.latency import attention_predictor, dp_sync_seconds, microbatch_times
from wlb.sim.model import ModelSpec
from wlb.sim.pipeline import simulate_pipeline


def comm_price(model: ModelSpec, layout: ParallelDims, hw: Hardware, cost: CostModel
               ) -> tuple[float, float]:
    """(per token received, per group micro-batch) of a group's K/V all-gather and gradient
    reduce-scatter, all layers, in ``cost``'s units (its W of a short document in seconds)."""
    one = replace(layout, cp=1, pp=1, vpp=1)
    unit = sum(microbatch_times([d], "per_seq", model, one, hw).total / cost.doc_workload(d)
               for d in (512, 1024, 2048)) / 3  # seconds per cost-model unit
    kv_bytes = 2 * max(model.kv_dim // layout.tp, model.head_dim) * hw.bytes_per_elem
    per_token = 2 * model.num_layers * hw.comm_exposed * kv_bytes / hw.link_bw(layout.tp * 2)
    fixed = 2 * model.num_layers * hw.comm_exposed * hw.link_latency_s
    return per_token / unit, fixed / unit


def joined_ranks(slots, pool: int) -> list[list[int]]:
    """The pool's ranks in sets that some group of ``slots`` joins (transitively), in order of
    their first rank: ranks of different sets never wait for each other.

    Example: groups (0, 2) and (2, 1), (3, 1) in every slot give [[0, 1], [2], [3]].
    """
    root = list(range(pool))

    def find(r: int) -> int:
        while root[r] != r:
            root[r] = root[root[r]]
            r = root[r]
        return r

    for s in slots:
        for g in s.groups:
            for r in range(g.first + 1, g.first + g.size):
                root[find(r)] = find(g.first)
    sets: dict[int, list[int]] = {}
    for r in range(pool):
        sets.setdefault(find(r), []).append(r)
    return list(sets.values())


def simulate_elastic_iteration(plan, model: ModelSpec, layout: ParallelDims, hw: Hardware,
                               cost: CostModel, context: int, report) -> None:
    """Append one iteration of ``plan`` run with elastic CP to ``report`` (a ``SimReport``).

    Ranks that no group joins run their pipelines unsynchronised, as training's replicas do
    until the gradient all-reduce (and as :func:`wlb.elastic.plan.plan_time` prices them): each
    set of :func:`joined_ranks` runs its own pipeline, its slots as long as its slowest group,
    and the iteration lasts as long as the slowest set. A plan that keeps the fixed layout is
    therefore simulated as WLB's replicas are.
    """
    eplan = plan_elastic(plan.microbatches, plan.dp_ranks, dp=layout.dp, cp=layout.cp,
                         rank_tokens=default_max_tokens(context) // layout.cp,
                         ec=ElasticCost(cost, *comm_price(model, layout, hw, cost)),
                         pp=layout.pp)
    predictor = attention_predictor(model, layout.tp, hw)
    choosers = {}

    def group_times(g):
        lens = packed_seq_lens([p.length for p in g.pieces], 1) if g.pieces else [2 * g.size]
        if g.size not in choosers:
            choosers[g.size] = StrategyChooser(cp_candidates("adaptive-paper"), g.size,
                                               predictor)
        if g.pieces:
            report.strategies[f"g{g.size}"] = report.strategies.get(f"g{g.size}", 0) + 1
        return microbatch_times(lens, choosers[g.size](lens), model, replace(layout, cp=g.size),
                                hw)

    times = [[group_times(g) for g in s.groups] for s in eplan.slots]
    makespans, per_slot = [], []
    for ranks in joined_ranks(eplan.slots, layout.dp * layout.cp):
        fwd, bwd, p2p = [], [], []
        for s, ts in zip(eplan.slots, times):
            mine = [t for g, t in zip(s.groups, ts) if g.first in ranks]
            fwd.append([max(t.fwd[k] for t in mine) for k in range(len(mine[0].fwd))])
            bwd.append([max(t.bwd[k] for t in mine) for k in range(len(mine[0].bwd))])
            p2p.append(max(t.p2p for t in mine))
            per_slot.append(sum(fwd[-1]) + sum(bwd[-1]))
        makespans.append(simulate_pipeline(fwd, bwd, layout.pp, layout.vpp, p2p)[0])
    report.iter_s.append(max(makespans) + dp_sync_seconds(model, layout, hw) + hw.step_s)
    report.pp_imbalance.append(imbalance(per_slot))
    report.cp_imbalance.append(1.0)
    report.tokens.append(plan.num_tokens)
