"""One rank's host path of a training step: plan -> CP strategies -> collate + shard.

Everything here runs on the host before the schedule can start, every iteration, on every rank;
the one place that does it is :func:`prepare_step`, for ``wlb.megatron.wlb_data`` and for
``tools/bench_data_path.py`` (which times it without a model or a process group), and it records
how long each stage took (:data:`STAGES`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from wlb.data.sources import DocumentSource
from wlb.elastic.plan import ElasticPlan
from wlb.host.batches import (
    MicroBatchInput,
    MicroBatchLayout,
    build_inputs,
    elastic_inputs,
    lay_out,
    plan_predictions,
)
from wlb.host.elastic import plan_slots, predictions
from wlb.packing.types import BatchPlan
from wlb.parallel import ParallelLayout


def is_logged(iteration: int, log_interval: int) -> bool:
    """Whether ``iteration`` is a logged one: every ``log_interval``-th, as megatron's
    ``training_log`` prints its line (the iterations whose cost-model predictions are made).

    Example: ``--log-interval 10 --train-iters 25`` logs iterations 10 and 20.
    """
    return iteration % log_interval == 0


#: the host path's stages, in the order they run (milliseconds in ``StepInputs.stage_ms``)
STAGES = ("plan", "cp_strategy", "elastic_plan", "collate_shard", "predictions")


@dataclass
class RankView:
    """Where one rank sits in its layout: what the host path needs of it.

    Attributes:
        layout: the run's sizes.
        dp_rank, cp_rank: the rank's DP replica and CP rank.
        pool_index: elastic CP: its place in the DP x CP pool (``dp_rank x CP + cp_rank``).
    """

    layout: ParallelLayout
    dp_rank: int
    cp_rank: int

    @property
    def pool_index(self) -> int:
        return self.layout.pool_index(self.dp_rank, self.cp_rank)


@dataclass
class StepInputs:
    """What the host path hands the schedule for one iteration.

    Attributes:
        plan: the iteration's plan (the same on every rank).
        layouts: trained lengths and CP strategy of every micro-batch when the predictions
            were made, else of this replica's (none under elastic CP, whose groups choose their
            own).
        inputs: this rank's micro-batches, collated and sharded.
        eplan: elastic CP's plan, or None.
        predictions: the iteration's logged cost-model figures (:func:`step_predictions`).
        stage_ms: milliseconds per stage of :data:`STAGES` (0 for one that did not run).
    """

    plan: BatchPlan
    layouts: list[MicroBatchLayout]
    inputs: list[MicroBatchInput]
    eplan: ElasticPlan | None = None
    predictions: dict = field(default_factory=dict)
    stage_ms: dict[str, float] = field(default_factory=dict)


def prepare_step(plan: BatchPlan, view: RankView, chooser, source: DocumentSource, *,
                 cost=None, elastic=None, rank_tokens: int = 0,
                 plan_ms: float = 0.0) -> StepInputs:
    """This rank's inputs for ``plan``: a CP strategy per micro-batch, then (elastic CP) the
    regrouped slots, then this rank's micro-batches collated and sharded, then (given ``cost``)
    the iteration's predictions.

    Args:
        plan: the iteration's plan (``PlanSchedule.next_plan``).
        view: the rank's place in the layout.
        chooser: the run's ``StrategyChooser``.
        source: the documents the plan's ids index.
        cost: the run's cost model: make the predictions (the loop passes it at logged
            iterations only); None: no predictions, and only this replica's micro-batches are
            laid out.
        elastic: elastic CP's ``ElasticRuntime`` (its cost and strategies), or None.
        rank_tokens: elastic CP: tokens one rank holds at most (S_max / CP).
        plan_ms: how long the caller took to make ``plan`` (recorded as the "plan" stage).

    The elastic plan is validated here and agreed on across ranks by the caller
    (``wlb.host.elastic.agree``: a collective).
    """
    layout = view.layout
    ms = dict.fromkeys(STAGES, 0.0)
    ms["plan"] = plan_ms
    t = time.perf_counter()
    # one CP strategy per micro-batch: every one for the predictions, else this replica's
    if cost is not None:
        layouts = lay_out(plan, layout.pad_multiple, chooser)
    elif elastic is None:
        layouts = lay_out(plan, layout.pad_multiple, chooser, view.dp_rank)
    else:
        layouts = []
    ms["cp_strategy"], t = (time.perf_counter() - t) * 1e3, time.perf_counter()
    eplan = None
    if elastic is not None:  # the DP x CP pool regrouped in every slot
        eplan = plan_slots(elastic, plan, layout, rank_tokens)
        ms["elastic_plan"], t = (time.perf_counter() - t) * 1e3, time.perf_counter()
        inputs = elastic_inputs(eplan.slots, view.pool_index, source,
                                sp_multiple=layout.tp if layout.sequence_parallel else 1,
                                strategy=elastic.strategy)
    else:
        inputs = build_inputs(layouts, view.dp_rank, source, pad_multiple=layout.pad_multiple,
                              cp_size=layout.cp, cp_rank=view.cp_rank)
    ms["collate_shard"], t = (time.perf_counter() - t) * 1e3, time.perf_counter()
    out = StepInputs(plan, layouts, inputs, eplan, stage_ms=ms)
    if cost is not None:
        out.predictions = step_predictions(out, cost, layout, elastic)
        ms["predictions"] = (time.perf_counter() - t) * 1e3
    return out


def make_prepare(view: RankView, chooser, source: DocumentSource, *, cost, elastic,
                 rank_tokens: int, log_interval: int):
    """This rank's host path as the prefetcher calls it, ``(plan, plan_ms, iteration) ->
    StepInputs``: :func:`prepare_step` with the predictions at logged iterations only
    (:func:`is_logged`; ``iteration`` None: always). WLB's data path
    (``wlb.megatron.wlb_data``) and ``tools/bench_data_path.py`` both use it."""

    def prepare(plan: BatchPlan, plan_ms: float = 0.0, iteration: int | None = None
                ) -> StepInputs:
        logged = iteration is None or is_logged(iteration, log_interval)
        return prepare_step(plan, view, chooser, source, cost=cost if logged else None,
                            elastic=elastic, rank_tokens=rank_tokens, plan_ms=plan_ms)

    return prepare


def step_predictions(prepared: StepInputs, cost, layout: ParallelLayout,
                     elastic=None) -> dict:
    """The iteration's logged cost-model figures (``plan_predictions``; elastic CP's too)."""
    out = plan_predictions(prepared.plan, prepared.layouts, cost, layout.cp)
    if prepared.eplan is not None:
        out.update(predictions(elastic, prepared.plan, prepared.eplan, layout))
    return out
