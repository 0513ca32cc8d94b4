"""The next iteration's plan and inputs, made while this one trains (``--wlb-host-prefetch``).

Every iteration a rank draws its plan (``PlanSchedule.next_plan``) and runs its host path
(:func:`wlb.host.step.prepare_step`). :class:`HostPrefetcher` does both in one background
thread, one iteration ahead: while the schedule of iteration i runs, the thread makes iteration
i+1's. It is deterministic (one thread, the same calls in the same order as without it), bounded
(at most one step waits, ready or in the making) and shut down on exit and on error.

A checkpoint after iteration i must not count iteration i+1's plan as consumed, so every
:class:`PreparedStep` carries what the schedule held right after its own plan was drawn:
``data_state`` (what a checkpoint stores), the plan-log rows and the pending tokens. The loop
uses those, never the schedule object the thread has moved on.

Threads, not processes: the host path is numpy over arrays and memory-mapped token reads, which
release the GIL for their heavy parts; a step on a GPU mostly waits in CUDA calls, which release
it too. A process would also have to re-open the data and rebuild the packer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from wlb.host.step import StepInputs
from wlb.packing.schedule import PlanSchedule
from wlb.packing.types import BatchPlan

#: this rank's host path: ``(plan, plan_ms, iteration) -> StepInputs``
Prepare = Callable[[BatchPlan, float, int], StepInputs]


@dataclass
class PreparedStep:
    """One iteration's plan and this rank's inputs, with the schedule's state right after the
    plan was drawn.

    Attributes:
        plan: the iteration's plan (None: the data ended; only without wrapping epochs).
        inputs: the host path's output for ``plan``.
        data_state: ``PlanSchedule.state_dict()`` after drawing ``plan`` (checkpoints).
        consumed, trained, pending: the plan log's rows (``--log-plans``; empty without it).
        pending_tokens: tokens the packer still holds after ``plan``.
    """

    plan: BatchPlan | None
    inputs: StepInputs | None
    data_state: dict
    consumed: list
    trained: list
    pending: list
    pending_tokens: int


def draw_step(schedule: PlanSchedule, prepare: Prepare, iteration: int, *,
              log_plans: bool = False) -> PreparedStep:
    """Draw iteration ``iteration``'s plan and make this rank's inputs for it
    (``prepare(plan, plan_ms, iteration)``)."""
    t0 = time.perf_counter()
    plan = schedule.next_plan()
    plan_ms = (time.perf_counter() - t0) * 1e3
    state = schedule.state_dict()
    pending = sum(p.length for p in schedule.packer.pending())
    rows = ((schedule.last_consumed, schedule.last_trained, schedule.pending_with_epochs())
            if log_plans else ([], [], []))
    inputs = prepare(plan, plan_ms, iteration) if plan is not None else None
    return PreparedStep(plan, inputs, state, *rows, pending_tokens=pending)


class HostPrefetcher:
    """Hands out :class:`PreparedStep` one after another, each made one iteration ahead.

    Args:
        schedule: the run's plan schedule (only the prefetcher draws from it from now on).
        prepare: ``(plan, plan_ms, iteration) -> StepInputs``, this rank's host path.
        first_iteration: the iteration the first step is for (1, or the resumed one + 1).
        ahead: make the next step in the background (False: each step when asked, in the
            caller's thread, exactly as without a prefetcher).
        log_plans: keep the plan-log rows of every step.

    Example:
        >>> with HostPrefetcher(schedule, prepare) as steps:   # doctest: +SKIP
        ...     step = steps.next(more=True)       # iteration 1, iteration 2 under way
    """

    def __init__(self, schedule: PlanSchedule, prepare: Prepare, *, first_iteration: int = 1,
                 ahead: bool = True, log_plans: bool = False) -> None:
        self._iteration = first_iteration  # the iteration of the next step drawn

        def draw() -> PreparedStep:  # (one thread at a time: the pool's, or the caller's)
            self._iteration += 1
            return draw_step(schedule, prepare, self._iteration - 1, log_plans=log_plans)

        self._draw = draw
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="wlb-host") if ahead else None
        self._next: Future | None = None
        #: milliseconds the last ``next`` waited for its step
        self.last_wait_ms = 0.0

    def next(self, more: bool = True) -> PreparedStep:
        """The next step; with ``more``, start making the one after it."""
        t0 = time.perf_counter()
        if self._pool is None:
            step = self._draw()
        else:
            step = (self._next or self._pool.submit(self._draw)).result()
            self._next = self._pool.submit(self._draw) if more and step.plan else None
        self.last_wait_ms = (time.perf_counter() - t0) * 1e3
        return step

    def close(self) -> None:
        """Stop: a step in the making is finished and dropped (its plan is never trained, and
        no checkpoint counts it)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool, self._next = None, None

    def __enter__(self) -> HostPrefetcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
