"""Iteration-time simulation of Plain-4D, Fixed-4D and WLB-LLM on a 4D layout (paper §7).

Each iteration draws one global batch (pp * dp context-length sequences' worth of documents) from
the same seeded document stream, packs it with the system's packer (the project's own packers,
the ones training uses), deals micro-batches to DP replicas, picks each micro-batch's CP strategy,
turns every micro-batch into per-stage latencies (``wlb.sim.latency``) and runs megatron's
pipeline schedule over them (``wlb.sim.pipeline``). Iteration time = slowest DP replica's
pipeline + exposed DP sync + optimizer step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from wlb.config import WLBConfig, cp_candidates
from wlb.cost_model import CostModel
from wlb.cp.selector import StrategyChooser
from wlb.metrics import imbalance
from wlb.packing.base import default_max_tokens
from wlb.packing.run_packer import build_run_packer
from wlb.packing.schedule import PlanSchedule
from wlb.packing.types import packed_seq_lens
from wlb.parallel import ParallelDims
from wlb.sim.hardware import Hardware
from wlb.sim.latency import (
    MicroBatchTimes,
    attention_predictor,
    dp_sync_seconds,
    microbatch_times,
)
from wlb.sim.model import ModelSpec
from wlb.sim.pipeline import simulate_pipeline


@dataclass(frozen=True)
class System:
    """A training system to simulate.

    Attributes:
        name: label.
        packing: packer registry name ("megatron" = stock fixed-length packing in stream order).
        cp: a ``--wlb-cp-sharding`` value ("per-seq", "per-doc", "mixed", "adaptive-paper": per
            micro-batch the paper's two, "adaptive": per micro-batch all three),
            "best-static" (the better static choice of per-seq / per-doc for the whole run, as
            the paper's Fixed-4D reports), or "elastic" (``wlb.sim.elastic``: the slots of the
            elastic CP plan, groups borrowing ranks across DP replicas).
        thresholds: outlier-queue thresholds for the WLB packer ("none" or "auto").
    """

    name: str
    packing: str
    cp: str
    thresholds: str = "none"


SYSTEMS: dict[str, System] = {
    s.name: s
    for s in (
        System("plain", "megatron", "per-seq"),
        System("fixed", "fixed-greedy", "best-static"),
        System("cp-per-doc", "megatron", "per-doc"),
        System("cp-adaptive", "megatron", "adaptive-paper"),
        System("pp-packing", "wlb", "per-seq", "auto"),
        System("wlb-nodelay", "wlb", "adaptive-paper", "none"),
        System("wlb", "wlb", "adaptive-paper", "auto"),
        System("cp-mixed", "megatron", "mixed"),
        System("cp-adaptive-mixed", "megatron", "adaptive"),
        System("wlb-mixed", "wlb", "adaptive", "auto"),
        System("wlb-elastic", "wlb", "elastic", "none"),
        System("wlb-elastic-delay", "wlb", "elastic", "auto"),
    )
}


@dataclass
class SimReport:
    """Figures of one simulated system on one configuration."""

    system: str
    iter_s: list[float]
    pp_imbalance: list[float]
    cp_imbalance: list[float]
    strategies: dict[str, int]
    tokens: list[int]

    @property
    def mean_iter_s(self) -> float:
        return float(np.mean(self.iter_s))

    def summary(self) -> dict:
        return {
            "system": self.system,
            "iter_s_mean": self.mean_iter_s,
            "tokens_per_s": float(np.sum(self.tokens) / np.sum(self.iter_s)),
            "pp_imbalance_mean": float(np.mean(self.pp_imbalance)),
            "cp_imbalance_mean": float(np.mean(self.cp_imbalance)),
            "strategies": self.strategies,
        }


def fit_cost_model(model: ModelSpec, layout: ParallelDims, hw: Hardware, max_len: int) -> CostModel:
    """What ``tools/calibrate_cost_model.py`` would fit on this hardware: single-document
    micro-batch latency over a length sweep, ``W = A d^2 + B d + C`` by relative least squares."""
    lens = np.unique(np.geomspace(64, max_len, 24).astype(int))
    t = np.array([microbatch_times([int(d)], "per_doc", model, layout, hw).total for d in lens])
    X = np.stack([lens.astype(float) ** 2, lens.astype(float), np.ones(len(lens))], axis=1)
    coef, *_ = np.linalg.lstsq(X / t[:, None], np.ones(len(lens)), rcond=None)
    coef = np.maximum(coef, 0.0)
    return CostModel(float(coef[0] / coef[1]), 1.0, float(coef[2] / coef[1]), source="sim-fit")


def system_chooser(cp_sharding: str, model: ModelSpec, layout: ParallelDims,
                   hw: Hardware) -> StrategyChooser:
    """The CP strategy of each micro-batch for ``cp_sharding`` (a ``--wlb-cp-sharding`` value),
    chosen by the simulated hardware's attention latency, as training's chooser by its table."""
    return StrategyChooser(cp_candidates(cp_sharding), layout.cp,
                           attention_predictor(model, layout.tp, hw))


def replica_times(plan, model: ModelSpec, layout: ParallelDims, hw: Hardware,
                  chooser: Callable[[tuple[int, ...]], str], pad_multiple: int = 1,
                  strategies: dict[str, int] | None = None) -> list[list[MicroBatchTimes]]:
    """Every DP replica's micro-batch times for ``plan``, in plan order.

    Args: as :func:`simulate_iteration`; ``strategies`` (if given) counts the CP strategy used
    for each micro-batch.
    """
    replicas: list[list[MicroBatchTimes]] = [[] for _ in range(layout.dp)]
    for mb, rank in zip(plan.microbatches, plan.dp_ranks):
        lens = packed_seq_lens([p.length for p in mb], pad_multiple)
        s = chooser(lens)
        if strategies is not None:
            strategies[s] = strategies.get(s, 0) + 1
        replicas[rank].append(microbatch_times(lens, s, model, layout, hw))
    return replicas


def simulate_iteration(plan, model: ModelSpec, layout: ParallelDims, hw: Hardware,
                       chooser: Callable[[tuple[int, ...]], str], report: SimReport,
                       pad_multiple: int = 1) -> None:
    """Append one iteration's simulated time and imbalance to ``report``.

    Args:
        plan: a ``BatchPlan`` (micro-batches of pieces, and their DP ranks).
        chooser: the CP strategy of a micro-batch from its document lengths
            (:func:`system_chooser`, or the training run's own chooser for replays).
        pad_multiple: micro-batches padded with a pad document to a multiple of this, as
            ``wlb.data.collate`` does in training.
    """
    replicas = replica_times(plan, model, layout, hw, chooser, pad_multiple, report.strategies)
    per_mb = [t.total for mbs in replicas for t in mbs]
    cp_imb = [imbalance(t.attn_rank_s) for mbs in replicas for t in mbs]
    makespans = []
    for mbs in replicas:
        if not mbs:
            continue
        fwd = [t.fwd for t in mbs]
        bwd = [t.bwd for t in mbs]
        ms, _ = simulate_pipeline(fwd, bwd, layout.pp, layout.vpp, [t.p2p for t in mbs])
        makespans.append(ms)
    report.iter_s.append(max(makespans) + dp_sync_seconds(model, layout, hw) + hw.step_s)
    report.pp_imbalance.append(imbalance(per_mb))
    report.cp_imbalance.append(float(np.mean(cp_imb)))
    report.tokens.append(plan.num_tokens)


def system_schedule(system: System, model: ModelSpec, layout: ParallelDims, context: int,
                    lengths: np.ndarray, hw: Hardware, *, seed: int = 1234,
                    cost: CostModel | None = None) -> PlanSchedule:
    """The seeded plan schedule ``system``'s packer produces (one global batch of PP x DP
    context-length micro-batches per iteration), as training would build it."""
    cost = cost or fit_cost_model(model, layout, hw, default_max_tokens(context))
    cfg = WLBConfig(packing=system.packing, outlier_thresholds=system.thresholds)
    packer, _ = build_run_packer(lengths, layout.pp * layout.dp, context, cost, seed,
                                 **cfg.packer_options())
    return PlanSchedule(lengths, packer, layout.dp, shuffle=True, seed=seed,
                        balance_dp=system.packing != "megatron")


def simulate_system(system: System, model: ModelSpec, layout: ParallelDims, context: int,
                    lengths: np.ndarray, hw: Hardware, *, iters: int, seed: int = 1234,
                    cost: CostModel | None = None) -> SimReport:
    """Simulate ``iters`` iterations of ``system`` (fresh packer, same seeded document stream)."""
    if system.cp == "best-static":
        runs = [simulate_system(System(system.name, system.packing, s, system.thresholds), model,
                                layout, context, lengths, hw, iters=iters, seed=seed, cost=cost)
                for s in ("per-seq", "per-doc")]
        return min(runs, key=lambda r: r.mean_iter_s)
    cost = cost or fit_cost_model(model, layout, hw, default_max_tokens(context))
    schedule = system_schedule(system, model, layout, context, lengths, hw, seed=seed, cost=cost)
    report = SimReport(system.name, [], [], [], {}, [])
    if system.cp == "elastic":
        from dataclasses import replace

        from wlb.sim.elastic import simulate_elastic_iteration

        # the planner's W(d) is one rank's time (a group of g ranks: W / g), so fit it at CP = 1
        one_rank = fit_cost_model(model, replace(layout, cp=1), hw, default_max_tokens(context))
        for _ in range(iters):
            simulate_elastic_iteration(schedule.next_plan(), model, layout, hw, one_rank,
                                       context, report)
        return report
    chooser = system_chooser(system.cp, model, layout, hw)
    for _ in range(iters):
        simulate_iteration(schedule.next_plan(), model, layout, hw, chooser, report)
    return report
