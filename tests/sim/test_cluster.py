"""System-level simulation: packers, strategies and the simulate_cluster tool."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from wlb.packing.base import default_max_tokens
from wlb.parallel import ParallelDims
from wlb.sim.cluster import SYSTEMS, fit_cost_model, simulate_system
from wlb.sim.hardware import h100
from wlb.sim.latency import microbatch_times
from wlb.sim.model import MODELS

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HW = h100()
SMALL = ParallelDims(tp=1, cp=2, pp=2, dp=2, vpp=1)


def _lengths(n=3000, seed=0, context=16384):
    rng = np.random.default_rng(seed)
    lens = rng.lognormal(6.5, 1.2, n).astype(int) + 1
    lens[rng.choice(n, n // 100, replace=False)] = rng.integers(context // 2, context, n // 100)
    return np.minimum(lens, context)


def test_fitted_cost_model_tracks_simulated_latency():
    model = MODELS["550m"]
    cost = fit_cost_model(model, SMALL, HW, 20480)
    for d in (256, 4096, 16384):
        t = microbatch_times([d], "per_doc", model, SMALL, HW).total
        ratio = cost.doc_workload(d) / t
        ref = cost.doc_workload(4096) / microbatch_times([4096], "per_doc", model, SMALL, HW).total
        assert ratio == pytest.approx(ref, rel=0.1)


def test_plain_fills_fixed_length_micro_batches_with_per_seq():
    rep = simulate_system(SYSTEMS["plain"], MODELS["550m"], SMALL, 16384, _lengths(), HW,
                          iters=3)
    assert rep.tokens == [4 * 16384] * 3  # pp*dp context-length sequences per iteration
    assert set(rep.strategies) == {"per_seq"}
    assert all(np.isfinite(rep.iter_s)) and min(rep.iter_s) > 0


def test_wlb_balances_better_than_plain_on_the_same_stream():
    model, lens = MODELS["550m"], _lengths()
    plain = simulate_system(SYSTEMS["plain"], model, SMALL, 16384, lens, HW, iters=12)
    wlb = simulate_system(SYSTEMS["wlb-nodelay"], model, SMALL, 16384, lens, HW, iters=12)
    assert np.mean(wlb.pp_imbalance) < np.mean(plain.pp_imbalance)
    assert np.mean(wlb.cp_imbalance) < np.mean(plain.cp_imbalance)
    assert sum(wlb.strategies.values()) == 12 * 4


def test_fixed_reports_the_better_static_strategy():
    model, lens = MODELS["550m"], _lengths()
    fixed = simulate_system(SYSTEMS["fixed"], model, SMALL, 16384, lens, HW, iters=4)
    assert len(fixed.strategies) == 1
    runs = {s: simulate_system(SYSTEMS["fixed"].__class__("f", "fixed-greedy", s), model,
                               SMALL, 16384, lens, HW, iters=4).mean_iter_s
            for s in ("per-seq", "per-doc")}
    assert fixed.mean_iter_s == pytest.approx(min(runs.values()))


def _tool(*args):
    return subprocess.run([sys.executable, "-m", "tools.simulate_cluster", *args], cwd=ROOT,
                          capture_output=True, text=True)


def test_tool_config_prints_every_system(tmp_path):
    out = _tool("config", "--model", "550m", "--tp", "1", "--cp", "2", "--pp", "2", "--dp", "1",
                "--vpp", "2", "--context", "16384", "--iters", "2", "--systems", "plain,wlb",
                "--json", str(tmp_path / "r.json"))
    assert out.returncode == 0, out.stderr
    assert "plain" in out.stdout and "wlb" in out.stdout and "tok/s" in out.stdout
    assert (tmp_path / "r.json").exists()


def test_tool_errors_name_the_bad_value():
    out = _tool("config", "--model", "13b", "--iters", "1")
    assert out.returncode != 0 and "13b" in out.stderr
    out = _tool("grid", "--iters", "1", "--", "--seq-length", "8")
    assert out.returncode != 0 and "validate" in out.stderr


def test_elastic_runs_the_same_batches_in_slots_of_borrowed_groups():
    model, lens = MODELS["550m"], _lengths()
    nodelay = simulate_system(SYSTEMS["wlb-nodelay"], model, SMALL, 16384, lens, HW, iters=6)
    elastic = simulate_system(SYSTEMS["wlb-elastic"], model, SMALL, 16384, lens, HW, iters=6)
    assert elastic.tokens == nodelay.tokens  # the same WLB plans, regrouped
    assert all(np.isfinite(elastic.iter_s)) and min(elastic.iter_s) > 0
    sizes = {int(k[1:]) for k in elastic.strategies}
    assert sizes <= {1, 2, 4} and sizes  # group sizes within the DP x CP pool of 4
    # every slot's pieces are in exactly one group: its micro-batches count at most N per slot
    assert sum(elastic.strategies.values()) >= 6 * 2  # 2 slots of at least one group each


def test_the_elastic_planner_prices_the_all_gather_from_the_simulated_links():
    from dataclasses import replace

    from wlb.sim.elastic import comm_price

    model = MODELS["550m"]
    cost = fit_cost_model(model, SMALL, HW, 16384)
    per_token, fixed = comm_price(model, SMALL, HW, cost)
    assert per_token > 0 and fixed > 0
    # twice the bandwidth halves the per-token price; twice the latency doubles the fixed one
    fast = replace(HW, intra_bw=2 * HW.intra_bw, inter_bw=2 * HW.inter_bw)
    assert comm_price(model, SMALL, fast, cost)[0] == pytest.approx(per_token / 2)
    slow = replace(HW, link_latency_s=2 * HW.link_latency_s)
    assert comm_price(model, SMALL, slow, cost)[1] == pytest.approx(2 * fixed)
    # in cost-model units: a token's K/V over the link costs far less than its linear work
    assert per_token < cost.linear_coef


def test_joined_ranks_are_the_sets_that_groups_tie_together():
    from wlb.elastic.plan import Group, Slot
    from wlb.sim.elastic import joined_ranks

    s = Slot((Group(0, 2, ()), Group(2, 1, ()), Group(3, 1, ())))
    assert joined_ranks([s, s], 4) == [[0, 1], [2], [3]]
    wide = Slot((Group(0, 4, ()),))
    assert joined_ranks([s, wide], 4) == [[0, 1, 2, 3]]
    pairs = Slot((Group(0, 1, ()), Group(1, 2, ()), Group(3, 1, ())))  # not aligned: still tied
    assert joined_ranks([s, pairs], 4) == [[0, 1, 2], [3]]


def test_elastic_that_keeps_the_fixed_layout_simulates_as_wlb(monkeypatch):
    """With communication priced out of reach the planner keeps the fixed layout, and the
    replicas then run unsynchronised, exactly as WLB's (not in lockstep slot by slot)."""
    import wlb.sim.elastic as sim_elastic

    monkeypatch.setattr(sim_elastic, "comm_price", lambda *a: (1e9, 1e9))
    model, lens = MODELS["550m"], _lengths()
    layout = ParallelDims(tp=1, cp=1, pp=2, dp=4, vpp=1)
    nodelay = simulate_system(SYSTEMS["wlb-nodelay"], model, layout, 16384, lens, HW, iters=4)
    elastic = simulate_system(SYSTEMS["wlb-elastic"], model, layout, 16384, lens, HW, iters=4)
    assert elastic.iter_s == pytest.approx(nodelay.iter_s, rel=1e-12)
    assert set(elastic.strategies) == {"g1"}


def test_the_elastic_planner_prices_one_rank_so_its_cost_model_is_fitted_at_cp1(monkeypatch):
    """ElasticCost's W(d) is one rank's time (g ranks: W / g): a fit on the CP = 2 layout would
    already hold the split once, and the planner would divide it again."""
    from dataclasses import replace

    import wlb.sim.elastic as sim_elastic

    seen = []
    monkeypatch.setattr(sim_elastic, "simulate_elastic_iteration",
                        lambda plan, model, layout, hw, cost, *a: seen.append(cost))
    model = MODELS["550m"]
    simulate_system(SYSTEMS["wlb-elastic"], model, SMALL, 16384, _lengths(), HW, iters=2)
    max_len = default_max_tokens(16384)
    assert seen == [fit_cost_model(model, replace(SMALL, cp=1), HW, max_len)] * 2
    assert seen[0] != fit_cost_model(model, SMALL, HW, max_len)
