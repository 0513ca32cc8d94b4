"""Elastic CP's step glue without processes: the all-gather price, each group's CP strategy,
and a bad plan refused before any collective."""

from __future__ import annotations

import json

import pytest

import wlb.host.elastic as elastic
from wlb.config import ConfigError, WLBConfig
from wlb.cost_model import CostModel
from wlb.cp.selector import DEFAULT_TABLE, KernelTable, StrategyChooser, choose_strategy
from wlb.elastic.plan import ElasticPlan, Group, PlanError, Slot
from wlb.host.step import RankView, prepare_step
from wlb.packing.types import BatchPlan, Piece
from wlb.parallel import ParallelLayout


def test_the_comm_price_comes_from_the_flag_else_the_cost_model_file_else_zero(tmp_path):
    path = tmp_path / "cost.json"
    path.write_text(json.dumps({"attn_coef": 1.0, "linear_coef": 1.0,
                                "elastic_comm_coef": 0.25, "elastic_comm_fixed": 40.0}))
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps({"attn_coef": 1.0, "linear_coef": 1.0}))
    assert elastic.comm_price(0.5, str(path)) == (0.5, 0.0)
    assert elastic.comm_price(0.0, str(path)) == (0.0, 0.0)  # an explicit 0 wins over the file
    assert elastic.comm_price(None, str(path)) == (0.25, 40.0)
    assert elastic.comm_price(None, str(bare)) == (0.0, 0.0)
    assert elastic.comm_price(None, None) == (0.0, 0.0)
    rt = elastic.build_runtime(None, CostModel(1.0, 1.0), StrategyChooser(("per_doc",), 1, None),
                               elastic.comm_price(None, str(path)))
    assert (rt.cost.comm_coef, rt.cost.comm_fixed) == (0.25, 40.0)


def test_the_split_efficiency_comes_from_the_cost_model_file_else_one(tmp_path):
    path = tmp_path / "cost.json"
    path.write_text(json.dumps({"attn_coef": 1.0, "linear_coef": 1.0,
                                "elastic_split_efficiency": 0.75}))
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps({"attn_coef": 1.0, "linear_coef": 1.0}))
    assert elastic.split_efficiency(str(path)) == 0.75
    assert elastic.split_efficiency(str(bare)) == 1.0
    assert elastic.split_efficiency(None) == 1.0
    rt = elastic.build_runtime(None, CostModel(1.0, 1.0), StrategyChooser(("per_doc",), 1, None),
                               split=elastic.split_efficiency(str(path)))
    assert rt.cost.split_efficiency == 0.75


@pytest.mark.parametrize("key,bad", [("elastic_split_efficiency", 0), ("elastic_split_efficiency",
                                     "high"), ("elastic_comm_coef", -1.0),
                                     ("elastic_comm_fixed", True)])
def test_a_bad_price_in_the_cost_model_file_is_one_line_naming_it(tmp_path, key, bad):
    path = tmp_path / "cost.json"
    path.write_text(json.dumps({"attn_coef": 1.0, "linear_coef": 1.0, key: bad}))
    read = elastic.split_efficiency if key == "elastic_split_efficiency" else (
        lambda p: elastic.comm_price(None, p))
    with pytest.raises(ConfigError, match=rf"cost.json: {key}={bad!r} must be a finite number"):
        read(str(path))


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_a_bad_comm_price_is_one_line_naming_it(bad):
    with pytest.raises(ConfigError, match=r"^--wlb-elastic-comm-coef=.* must be a finite"):
        WLBConfig(elastic_cp=True, elastic_comm_coef=bad)


def test_a_group_chooses_its_strategy_as_a_cp_group_of_its_size():
    table = KernelTable.from_json(DEFAULT_TABLE)
    candidates = ("per_seq", "per_doc", "mixed")
    rt = elastic.build_runtime(None, CostModel(1.0, 1.0), StrategyChooser(candidates, 1, table))
    # one long document then many short ones: per_seq leaves rank 0 the long one's front
    for lens in [(3000, *[40] * 60), (600, 600, 600, 600), (64,) * 50]:
        for g in (2, 4):
            assert rt.strategy(lens, g) == choose_strategy(lens, g, table, candidates)[0]
    fixed = elastic.build_runtime(None, CostModel(1.0, 1.0),
                                  StrategyChooser(("per_doc",), 1, None))
    assert fixed.strategy((3000, 40), 4) == "per_doc"  # a single candidate is used as it is


def test_a_plan_that_would_deadlock_is_refused_before_any_collective(monkeypatch):
    pieces = [Piece(0, 0, 100, 0), Piece(1, 0, 50, 0)]
    bad = ElasticPlan([Slot((Group(0, 1, tuple(pieces)),))], [1.0])  # rank 1 of 2 in no group
    monkeypatch.setattr(elastic, "plan_elastic", lambda *a, **k: bad)
    called = []
    monkeypatch.setattr(elastic, "check_plan_agreement", lambda *a, **k: called.append(a))
    rt = elastic.build_runtime(None, CostModel(1.0, 1.0), StrategyChooser(("per_doc",), 1, None))
    layout = ParallelLayout(world_size=2, global_batch_size=2)
    plan = BatchPlan(0, [pieces[:1], pieces[1:]], [0, 1])
    with pytest.raises(PlanError, match=r"slot 0: its groups cover pool ranks \[0\], not each"):
        prepare_step(plan, RankView(layout, 1, 0), rt.chooser, None, elastic=rt,
                     rank_tokens=100)  # the host path validates; train_step agrees after it
    assert not called


def test_the_logged_cp_strategies_are_the_elastic_groups_not_the_fixed_layouts():
    """Each group runs its own strategy (one rank: whole, per_seq); the iteration's WLB line
    and --log-json say those, not the fixed layout's."""
    pieces = [Piece(i, 0, n, 0) for i, n in enumerate((900, 40, 40, 300))]
    layout = ParallelLayout(world_size=2, cp=2, global_batch_size=2, seq_length=1024)
    plan = BatchPlan(0, [pieces[:2], pieces[2:]], [0, 0])
    eplan = ElasticPlan([Slot((Group(0, 2, tuple(pieces[:2])),)),
                         Slot((Group(0, 1, (pieces[2],)), Group(1, 1, (pieces[3],))))],
                        [1.0, 1.0])
    rt = elastic.build_runtime(None, CostModel(1.0, 1.0), StrategyChooser(("per_doc",), 2, None))
    got = elastic.predictions(rt, plan, eplan, layout)
    assert got["cp_strategy"] == {"per_doc": 1, "per_seq": 2}
    assert got["elastic_group_sizes"] == {"2": 1, "1": 2}
