"""The link monitor: cached probe results; a fresh one shared by the clusters that asked while a probe ran."""

from __future__ import annotations

import threading
import time

from lifeline_agent.link import LinkMonitor


class CountingProbe:
    def __init__(self, seconds: float = 0.0, answer: bool = True) -> None:
        self.seconds, self.answer, self.calls = seconds, answer, 0

    def __call__(self) -> bool:
        self.calls += 1
        time.sleep(self.seconds)
        return self.answer


def test_a_result_is_reused_until_the_interval_passes() -> None:
    probe = CountingProbe()
    monitor = LinkMonitor(probe, interval=0.2)
    assert monitor.is_up() and monitor.is_up()
    assert probe.calls == 1
    time.sleep(0.25)
    monitor.is_up()
    assert probe.calls == 2


def test_clusters_asking_for_a_fresh_result_while_a_probe_runs_share_the_next_one() -> None:
    probe = CountingProbe(seconds=0.2)
    monitor = LinkMonitor(probe, interval=3600)
    first = threading.Thread(target=monitor.is_up, kwargs={"fresh": True})
    first.start()
    time.sleep(0.05)  # the first probe runs: the others ask now
    results: list[bool] = []
    others = [threading.Thread(target=lambda: results.append(monitor.is_up(fresh=True))) for _ in range(7)]
    for thread in others:
        thread.start()
    for thread in [first, *others]:
        thread.join()
    assert results == [True] * 7
    assert probe.calls == 2  # was 8 probes one after the other: 1.6 s instead of 0.4 s


def test_a_fresh_result_comes_from_a_probe_started_after_the_question() -> None:
    probe = CountingProbe()
    monitor = LinkMonitor(probe, interval=3600)
    monitor.is_up()
    probe.answer = False  # the link went down just after that probe
    assert monitor.is_up() is True  # remembered
    assert monitor.is_up(fresh=True) is False
    assert probe.calls == 2
    assert monitor.last is False


def test_a_probe_started_since_the_given_time_is_fresh_enough() -> None:
    probe = CountingProbe()
    monitor = LinkMonitor(probe, interval=3600)
    step_began = time.monotonic()
    assert monitor.is_up()  # the step's first question probes
    assert monitor.is_up(since=step_began) is True  # a probe of this step: not asked again
    assert probe.calls == 1
    probe.answer = False
    assert monitor.is_up(since=time.monotonic()) is False  # that probe started before: a new one
    assert probe.calls == 2
