"""The pipeline simulator: closed forms on uniform work, megatron-core's own schedule order."""

from __future__ import annotations

import types

import pytest

from wlb.sim.pipeline import ScheduleError, rank_order, simulate_pipeline


def _uniform(m: int, stages: int, f: float, b: float):
    return [[f] * stages for _ in range(m)], [[b] * stages for _ in range(m)]


@pytest.mark.parametrize("pp,m", [(1, 3), (2, 2), (2, 5), (4, 4), (4, 8), (3, 7)])
def test_1f1b_uniform_makespan_is_m_plus_bubble(pp, m):
    fwd, bwd = _uniform(m, pp, 1.0, 2.0)
    makespan, busy = simulate_pipeline(fwd, bwd, pp)
    assert makespan == pytest.approx((m + pp - 1) * 3.0)
    assert busy == pytest.approx([m * 3.0] * pp)


@pytest.mark.parametrize("pp,vpp,m", [(2, 2, 2), (2, 2, 4), (4, 2, 4), (4, 2, 8), (2, 3, 6)])
def test_interleaved_uniform_bubble_shrinks_by_vpp(pp, vpp, m):
    """Megatron's interleaved schedule: bubble (pp-1) chunk-times instead of (pp-1) stage-times."""
    fwd, bwd = _uniform(m, pp * vpp, 1.0, 2.0)
    makespan, _ = simulate_pipeline(fwd, bwd, pp, vpp)
    assert makespan == pytest.approx(m * vpp * 3.0 + (pp - 1) * 3.0)


def test_worked_example_in_docstring():
    assert simulate_pipeline([[1, 1], [1, 1]], [[2, 2], [2, 2]], 2)[0] == 9.0


def test_one_microbatch_pays_every_hop_twice():
    pp = 4
    fwd, bwd = [[1.0, 2.0, 3.0, 4.0]], [[2.0, 1.0, 1.0, 1.0]]
    makespan, _ = simulate_pipeline(fwd, bwd, pp, 1, p2p=0.5)
    assert makespan == pytest.approx(sum(fwd[0]) + sum(bwd[0]) + 2 * (pp - 1) * 0.5)


def test_heavy_microbatch_is_on_the_critical_path():
    """Paper §3.1: one slow micro-batch delays the whole pipeline by more than its own excess."""
    pp, m = 4, 4
    fwd, bwd = _uniform(m, pp, 1.0, 2.0)
    balanced = simulate_pipeline(fwd, bwd, pp)[0]
    fwd[0], bwd[0] = [3.0] * pp, [6.0] * pp  # +6 per stage on micro-batch 0, total work +24
    heavy = simulate_pipeline(fwd, bwd, pp)[0]
    assert heavy >= balanced + 6.0 * pp / 2
    assert heavy >= sum(fwd[0]) + sum(bwd[0])


@pytest.mark.parametrize("pp,vpp,m", [(2, 1, 4), (4, 1, 3), (2, 2, 4), (4, 2, 8), (4, 3, 4),
                                      (2, 2, 5)])
def test_every_op_once_and_forward_before_backward(pp, vpp, m):
    for r in range(pp):
        order = rank_order(pp, r, m, vpp)
        assert sorted(order) == sorted((k, j, c) for k in "FB" for j in range(m)
                                       for c in range(vpp))
        for j in range(m):
            for c in range(vpp):
                assert order.index(("F", j, c)) < order.index(("B", j, c))


@pytest.mark.parametrize("pp,vpp,m", [(2, 2, 2), (2, 2, 4), (4, 2, 4), (4, 2, 8), (4, 4, 8),
                                      (2, 3, 6), (4, 2, 12)])
def test_interleaved_order_matches_megatron_core(pp, vpp, m):
    """Our order against megatron-core's get_schedule_table / get_pp_rank_microbatches."""
    schedules = pytest.importorskip("megatron.core.pipeline_parallel.schedules")
    table = schedules.get_schedule_table(m, vpp, pp)
    for r in range(pp):
        comm = types.SimpleNamespace(
            pp_group=types.SimpleNamespace(size=lambda: pp, rank=lambda r=r: r),
            virtual_pipeline_model_parallel_size=vpp)
        total, _, warm, _ = schedules.get_pp_rank_microbatches(m, vpp, pp, p2p_communicator=comm)
        order = rank_order(pp, r, m, vpp)
        fwd = [(j, c) for k, j, c in order if k == "F"]
        bwd = [(j, c) for k, j, c in order if k == "B"]
        assert fwd == list(table)
        assert bwd == [(j, vpp - 1 - c) for j, c in table]
        # warm-up forwards, then strict alternation F, B, then the cool-down backwards
        assert [k for k, _, _ in order[:warm]] == ["F"] * warm
        steady = [k for k, _, _ in order[warm:warm + 2 * (total - warm)]]
        assert steady == ["F", "B"] * (total - warm)


@pytest.mark.parametrize("pp,m", [(2, 4), (4, 3), (4, 8)])
def test_1f1b_warmup_matches_megatron_core(pp, m):
    schedules = pytest.importorskip("megatron.core.pipeline_parallel.schedules")
    for r in range(pp):
        comm = types.SimpleNamespace(
            pp_group=types.SimpleNamespace(size=lambda: pp, rank=lambda r=r: r),
            virtual_pipeline_model_parallel_size=None)
        _, _, warm, _ = schedules.get_pp_rank_microbatches(m, 1, pp, p2p_communicator=comm)
        order = rank_order(pp, r, m)
        assert [k for k, _, _ in order[:warm]] == ["F"] * warm
        if warm < m:  # then one forward and its matching backward (1F1B)
            assert [k for k, _, _ in order[warm:warm + 2]] == ["F", "B"]


def test_bad_sizes_are_named():
    with pytest.raises(ScheduleError, match="pp=0"):
        rank_order(0, 0, 4)
    with pytest.raises(ScheduleError, match=r"\[2\]\[4\]"):
        simulate_pipeline([[1.0] * 3] * 2, [[1.0] * 4] * 2, 2, 2)
