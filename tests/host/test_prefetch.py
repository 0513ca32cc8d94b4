"""The host path of a step (``wlb.host.step``), its benchmark (``tools/bench_data_path.py``)
and its prefetcher (``wlb.host.prefetch``): one set of functions, made ahead exactly."""

from __future__ import annotations

import threading
import time

import pytest

from tools.bench_data_path import bench, build_host_path
from wlb.host.prefetch import HostPrefetcher
from wlb.host.step import STAGES, prepare_step


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    """WLB's RunConfig of a Megatron-LM command line for 4 ranks (CP 2 x DP 2), parsed and
    validated by Megatron-LM without a process group (``run_config_for``)."""
    from wlb.megatron import cpu_loop

    cpu_loop.apply()
    from wlb.megatron.replica import run_config_for

    cache = str(tmp_path_factory.mktemp("cache"))
    return run_config_for([
        "--mock-data", "--mock-num-docs", "300", "--seq-length", "256",
        "--max-position-embeddings", "256", "--global-batch-size", "8", "--micro-batch-size",
        "1", "--num-layers", "4", "--hidden-size", "64", "--num-attention-heads", "4",
        "--context-parallel-size", "2", "--wlb-packing", "wlb", "--wlb-cp-sharding",
        "adaptive", "--wlb-outlier-thresholds", "120,200", "--lr", "1e-3", "--eval-interval",
        "1000", "--transformer-impl", "local", "--attention-dropout", "0", "--tokenizer-type",
        "NullTokenizer", "--vocab-size", "257", "--data-cache-path",
        cache, "--train-iters", "20"], 4)


def _host(cfg, rank: int = 3, world: int = 4):
    return build_host_path(cfg, world, rank)


def test_the_benchmark_overlaps_the_host_path_with_a_stand_in_step(cfg):
    """With the next inputs made during a 2 x longer stand-in step, the loop hardly waits."""
    got = bench(cfg, 4, 0, iters=4, step_ms=1.0)
    slow = bench(cfg, 4, 0, iters=4, step_ms=4 * got["iter_ms"] + 20)
    assert slow["wait_ms"] < 0.25 * slow["iter_ms"] and got["wait_ms"] > 0


@pytest.mark.parametrize("ahead", [False, True])
def test_steps_made_ahead_are_the_serial_steps_with_the_state_after_their_own_plan(cfg, ahead):
    schedule, chooser, source, _, view, _ = _host(cfg)
    serial, _, _, _, _, _ = _host(cfg)
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


def test_an_error_in_the_background_reaches_the_loop_and_close_waits_for_the_thread(cfg):
    schedule, chooser, source, _, view, _ = _host(cfg)
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
    with HostPrefetcher(_host(cfg)[0], prepare, ahead=True) as more:
        more.next()  # leaves step 1 in flight: the with-block's close waits for it
    assert not [t for t in threading.enumerate() if t.name.startswith("wlb-host")]
