"""The per-cluster progress check: a step past its bound is reported stuck, with where its thread is."""

from __future__ import annotations

import threading
from pathlib import Path

from lifeline_agent.config import AgentConfig, Timing
from lifeline_agent.progress import STEP_CALLS, StepWatch, step_bound


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_bound_is_the_csr_wait_plus_a_step_s_calls_and_two_probes() -> None:
    config = AgentConfig(source=Path("agent.toml"), probe_timeout=2.0, timing=Timing(csr_timeout=120, api_timeout=10))
    assert step_bound(config) == 120 + STEP_CALLS * 10 + 2 * 2.0


def test_a_step_within_its_bound_is_not_stuck_and_no_step_is_never_stuck() -> None:
    clock, published = Clock(), []
    watch = StepWatch(30.0, clock)
    assert watch.check(lambda: published.append(1)) is None
    watch.begin()
    clock.now += 30.0
    assert watch.check(lambda: published.append(1)) is None
    assert watch.end() is False
    assert published == [] and watch.reason is None


def test_a_step_past_its_bound_says_where_its_thread_is_until_it_ends() -> None:
    clock, release, started = Clock(), threading.Event(), threading.Event()
    watch = StepWatch(30.0, clock)
    ended: list[bool] = []

    def stuck_step() -> None:
        watch.begin()
        started.set()
        release.wait(10)
        ended.append(watch.end())

    thread = threading.Thread(target=stuck_step)
    thread.start()
    started.wait(5)
    clock.now += 95.4
    published: list[str | None] = []
    reason = watch.check(lambda: published.append(watch.reason))
    assert reason is not None and reason.startswith("stuck in wait (threading.py:")
    assert reason.endswith(" for 95 s (a step may take 30 s)")
    assert published == [reason]  # published while the reason is set
    release.set()
    thread.join(5)
    assert ended == [True]  # the step's real outcome must be published again
    assert watch.reason is None and watch.check(lambda: published.append(None)) is None
