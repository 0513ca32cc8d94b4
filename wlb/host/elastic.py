"""Elastic CP in the training step: each iteration's slots planned, checked and laid out.

The plan is a pure function of the iteration's :class:`~wlb.packing.types.BatchPlan`
(``wlb.elastic.planner``), so every rank computes it alone; before the schedule runs any
collective, the plan is validated (every slot partitions the pool, every piece trained once) and
its digest compared across ranks. Each group's micro-batch runs the CP strategy the run's
selector picks for a CP group of that size.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field

from wlb.config import ConfigError
from wlb.cost_model import CostModel
from wlb.cp.selector import StrategyChooser
from wlb.elastic.plan import ElasticCost, ElasticPlan, fixed_slots, plan_time, validate_plan
from wlb.elastic.planner import plan_elastic
from wlb.host.batches import group_layout

#: the cost-model file's keys for the all-gather's prices (``tools/calibrate_comm.py``)
COMM_KEYS = ("elastic_comm_coef", "elastic_comm_fixed")
#: the cost-model file's key for the measured split efficiency (``tools/calibrate_comm.py``)
SPLIT_KEY = "elastic_split_efficiency"


def _file_prices(path: str, keys, default: float, ok, need: str) -> list[float]:
    """The cost-model file's ``keys`` (``default`` where absent), each checked by ``ok``."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    out = []
    for key in keys:
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok(value):
            raise ConfigError(f"{path}: {key}={value!r} must be {need} "
                              "(tools/calibrate_comm.py writes it)")
        out.append(float(value))
    return out


def comm_price(flag: float | None, cost_model_path: str | None) -> tuple[float, float]:
    """(per token gathered, per group micro-batch): ``--wlb-elastic-comm-coef`` (then no fixed
    part), else the cost-model file's :data:`COMM_KEYS`, else free.

    Raises:
        ConfigError: a price in the file that is not a finite number >= 0.
    """
    if flag is not None:
        return float(flag), 0.0
    if cost_model_path:
        return tuple(_file_prices(cost_model_path, COMM_KEYS, 0.0, lambda v: 0 <= v < math.inf,
                                  "a finite number >= 0"))
    return 0.0, 0.0


def split_efficiency(cost_model_path: str | None) -> float:
    """The cost-model file's :data:`SPLIT_KEY` (``ElasticCost.split_efficiency``), else 1.

    Raises:
        ConfigError: a value that is not a finite number > 0.
    """
    if not cost_model_path:
        return 1.0
    return _file_prices(cost_model_path, [SPLIT_KEY], 1.0, lambda v: 0 < v < math.inf,
                        "a finite number > 0")[0]


@dataclass
class ElasticRuntime:
    """What a rank needs to run elastic CP.

    Attributes:
        groups: the pool's process groups (``wlb.megatron.elastic.ElasticGroups``).
        cost: the planner's group cost (the run's cost model and all-gather price).
        chooser: the run's CP strategy chooser; a group of g ranks uses the same candidates
            and latency table for CP = g.
    """

    groups: object
    cost: ElasticCost
    chooser: StrategyChooser
    _by_size: dict = field(default_factory=dict)

    @property
    def pool_index(self) -> int:
        return self.groups.pool_index

    def group(self, first: int, size: int):
        return self.groups.group(first, size)

    def strategy(self, seq_lens, size: int) -> str:
        """The CP strategy of a group of ``size`` ranks running ``seq_lens``."""
        if size not in self._by_size:
            c = self.chooser
            self._by_size[size] = StrategyChooser(c.candidates, size, c.table)
        return self._by_size[size](seq_lens)


def build_runtime(groups, cost: CostModel, chooser: StrategyChooser,
                  comm: tuple[float, float] = (0.0, 0.0), split: float = 1.0) -> ElasticRuntime:
    """The runtime of ``groups`` with the all-gather priced at ``comm`` (:func:`comm_price`) and
    a split document's attention at ``split`` efficiency (:func:`split_efficiency`)."""
    return ElasticRuntime(groups, ElasticCost(cost, *comm, split_efficiency=split), chooser)


def plan_slots(rt: ElasticRuntime, plan, layout, rank_tokens: int) -> ElasticPlan:
    """The iteration's elastic plan, validated (pure: every rank computes the same alone)."""
    eplan = plan_elastic(plan.microbatches, plan.dp_ranks, dp=layout.dp, cp=layout.cp,
                         rank_tokens=rank_tokens, ec=rt.cost, pp=layout.pp)
    validate_plan(eplan, layout.dp * layout.cp, [p for mb in plan.microbatches for p in mb])
    return eplan


class PlanDisagreement(RuntimeError):
    """Ranks computed different plans: the run cannot go on."""


def check_plan_agreement(digest: str, iteration: int, device=None, what: str = "packing plans",
                         group=None) -> None:
    """Every rank (of ``group``; default: the world) computed the same plan (``digest``, hex),
    or fail loudly (collective: one all-reduce of two int64)."""
    import torch
    import torch.distributed as dist

    value = int(digest[:15], 16)  # 60 bits: fits int64
    t = torch.tensor([value, -value], dtype=torch.int64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN, group=group)
    t = t.cpu()
    if int(t[0]) != value or -int(t[1]) != value:
        raise PlanDisagreement(
            f"iteration {iteration}: ranks computed different {what} (rank "
            f"{dist.get_rank()} has {digest}); same data, seed and flags on every rank?")


def agree(eplan: ElasticPlan, plan, device=None, group=None) -> None:
    """Every rank (of ``group``: a stage's DP x CP pool is enough, since only its ranks share
    groups; default: the world) holds the same elastic plan (collective; before any group's
    collective)."""
    check_plan_agreement(eplan.digest(), plan.step + 1, device, what="elastic CP plans",
                         group=group)


def predictions(rt: ElasticRuntime, plan, eplan: ElasticPlan, layout) -> dict:
    """Logged figures of an elastic plan: its digest, group sizes, the CP strategies its groups
    run (``cp_strategy``, in place of the fixed layout's), and predicted time against the fixed
    layout's (``plan_time``: cost model, with the pipeline's warm-up)."""
    fixed = fixed_slots(plan.microbatches, plan.dp_ranks, layout.dp, layout.cp)
    sp_multiple = layout.tp if layout.sequence_parallel else 1
    sizes, strategies = Counter(), Counter()
    for s in eplan.slots:
        for grp in s.groups:
            sizes[str(grp.size)] += 1
            strategies[group_layout(grp, sp_multiple, rt.strategy)[2]] += 1
    return {"elastic_digest": eplan.digest(), "elastic_group_sizes": dict(sizes),
            "cp_strategy": dict(sorted(strategies.items())),
            "elastic_speedup_pred": plan_time(fixed, rt.cost, layout.pp)
            / max(plan_time(eplan.slots, rt.cost, layout.pp), 1e-30)}
