"""Elastic CP in the cluster simulator: every slot of the plan's groups, in lockstep.

All DP replicas run the elastic plan's slots together (``wlb.elastic.planner``): a group of g
pool ranks runs its micro-batch as a CP = g micro-batch would (the CP strategy the selector picks
for CP = g, the K/V all-gather over the g ranks, whose link is the one a CP = g group of TP x g
ranks would use: it crosses nodes when TP x g does), and a slot lasts, at every pipeline stage,
as long as its slowest group. The pipeline runs the slots as micro-batches. The planner prices
the all-gather as training's ``tools/calibrate_comm.py`` does, from the simulated links
(:func:`comm_price`).
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


def simulate_elastic_iteration(plan, model: ModelSpec, layout: ParallelDims, hw: Hardware,
                               cost: CostModel, context: int, report) -> None:
    """Append one iteration of ``plan`` run with elastic CP to ``report`` (a ``SimReport``)."""
    eplan = plan_elastic(plan.microbatches, plan.dp_ranks, dp=layout.dp, cp=layout.cp,
                         rank_tokens=default_max_tokens(context) // layout.cp,
                         ec=ElasticCost(cost, *comm_price(model, layout, hw, cost)),
                         pp=layout.pp)
    predictor = attention_predictor(model, layout.tp, hw)
    choosers = {}
    fwd, bwd, p2p, per_slot = [], [], [], []
    for slot in eplan.slots:
        times = []
        for g in slot.groups:
            if not g.pieces:
                continue
            lens = packed_seq_lens([p.length for p in g.pieces], 2 * g.size)
            if g.size not in choosers:
                choosers[g.size] = StrategyChooser(cp_candidates("adaptive-paper"), g.size,
                                                   predictor)
            times.append(microbatch_times(lens, choosers[g.size](lens), model,
                                          replace(layout, cp=g.size), hw))
            report.strategies[f"g{g.size}"] = report.strategies.get(f"g{g.size}", 0) + 1
        fwd.append([max(t.fwd[s] for t in times) for s in range(len(times[0].fwd))])
        bwd.append([max(t.bwd[s] for t in times) for s in range(len(times[0].bwd))])
        p2p.append(max(t.p2p for t in times))
        per_slot.append(sum(fwd[-1]) + sum(bwd[-1]))
    ms, _ = simulate_pipeline(fwd, bwd, layout.pp, layout.vpp, p2p)
    report.iter_s.append(ms + dp_sync_seconds(model, layout, hw) + hw.step_s)
    report.pp_imbalance.append(imbalance(per_slot))
    report.cp_imbalance.append(1.0)
    report.tokens.append(plan.num_tokens)
