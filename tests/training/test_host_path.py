"""The host path of a step (``wlb.training.host``), its benchmark (``tools/bench_data_path.py``)
and its prefetcher (``wlb.training.prefetch``): one set of functions, made ahead exactly."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest
import torch

import wlb.training.loop as loop
from tools.bench_data_path import bench, build_host_path
from wlb.training.arguments import parse
from wlb.training.host import STAGES, prepare_step
from wlb.training.prefetch import HostPrefetcher

FLAGS = ["--mock-data", "--mock-num-docs", "300", "--seq-length", "256", "--global-batch-size",
         "8", "--num-layers", "4", "--hidden-size", "64", "--num-attention-heads", "4",
         "--context-parallel-size", "2", "--wlb-packing", "wlb", "--wlb-cp-sharding", "adaptive",
         "--wlb-outlier-thresholds", "120,200"]


def _host(rank: int = 3, world: int = 4, flags=FLAGS):
    return build_host_path(parse(flags), world, rank)


def test_train_step_and_the_benchmark_run_the_same_host_path(monkeypatch):
    schedule, chooser, source, cost, view, _ = _host()
    assert (view.dp_rank, view.cp_rank) == (1, 1)  # rank 3 of CP=2 x DP=2
    fake_run = SimpleNamespace(
        groups=SimpleNamespace(layout=view.layout, dp_rank=view.dp_rank, cp_rank=view.cp_rank),
        chooser=chooser, source=source, cost=cost, elastic=None,
        packer_max_tokens=schedule.packer.max_tokens,
        cfg=SimpleNamespace(logging=SimpleNamespace(log_interval=1),
                            training=SimpleNamespace(train_iters=1)))
    plan = schedule.next_plan()
    a = loop.host_path(fake_run)(plan)
    b = prepare_step(plan, view, chooser, source, cost=cost,
                     rank_tokens=schedule.packer.max_tokens // 2)
    assert a.predictions == b.predictions and a.predictions["cp_imbalance_pred"] >= 1.0
    assert [x.strategy for x in a.layouts] == [x.strategy for x in b.layouts]
    assert len(a.inputs) == len(b.inputs) == 4  # GBS 8 over DP 2: this replica's four
    for x, y in zip(a.inputs, b.inputs):
        assert x.seq_lens == y.seq_lens and x.index == y.index
        for k in ("tokens", "labels", "loss_mask", "positions"):
            assert torch.equal(getattr(x, k), getattr(y, k)), k

    class Took(Exception):
        pass

    def spy(run):  # train_step takes its inputs from host_path when none were made ahead
        raise Took

    monkeypatch.setattr(loop, "host_path", spy)
    with pytest.raises(Took):
        loop.train_step(fake_run, plan)


def test_the_benchmark_overlaps_the_host_path_with_a_stand_in_step():
    """With the next inputs made during a 2 x longer stand-in step, the loop hardly waits."""
    got = bench(parse(FLAGS), 4, 0, iters=4, step_ms=1.0)
    slow = bench(parse(FLAGS), 4, 0, iters=4, step_ms=4 * got["iter_ms"] + 20)
    assert slow["wait_ms"] < 0.25 * slow["iter_ms"] and got["wait_ms"] > 0


@pytest.mark.parametrize("ahead", [False, True])
def test_steps_made_ahead_are_the_serial_steps_with_the_state_after_their_own_plan(ahead):
    schedule, chooser, source, _, view, _ = _host()
    serial, _, _, _, _, _ = _host()
    prepare = lambda plan, ms, it: prepare_step(plan, view, chooser, source, plan_ms=ms)  # noqa: E731
    with HostPrefetcher(schedule, prepare, ahead=ahead, log_plans=True) as steps:
        for it in range(6):
            step = steps.next(more=it < 5)
            want = serial.next_plan()
            assert step.plan.digest() == want.digest()
            # what a checkpoint after this iteration stores: not the plan made ahead
            assert step.data_state == serial.state_dict()
            assert step.consumed == serial.last_consumed and step.trained == serial.last_trained
            assert step.pending == serial.pending_with_epochs()
            assert step.pending_tokens == sum(p.length for p in serial.packer.pending())
            assert set(step.inputs.stage_ms) == set(STAGES) and step.inputs.stage_ms["plan"] > 0
    if ahead:  # the last step asked for no more: the schedule is not a plan further
        assert schedule.state_dict() == serial.state_dict()


def test_an_error_in_the_background_reaches_the_loop_and_close_waits_for_the_thread():
    schedule, chooser, source, _, view, _ = _host()
    calls = []

    def prepare(plan, ms, it):
        calls.append(plan.step)
        if plan.step == 1:
            raise ValueError("bad micro-batch")
        time.sleep(0.05)
        return prepare_step(plan, view, chooser, source, plan_ms=ms)

    steps = HostPrefetcher(schedule, prepare, ahead=True)
    assert steps.next().plan.step == 0  # step 1 now in the making
    with pytest.raises(ValueError, match="bad micro-batch"):
        steps.next()
    steps.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("wlb-host")]
    with HostPrefetcher(_host()[0], prepare, ahead=True) as more:
        more.next()  # leaves step 1 in flight: the with-block's close waits for it
    assert not [t for t in threading.enumerate() if t.name.startswith("wlb-host")]
