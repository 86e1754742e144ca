"""The lab's Outposts service (lab/region/outposts.py): ``ConnectedStatus`` per minute from the link's history."""

from __future__ import annotations

import datetime as dt
from typing import Any

from lab.region.outposts import PROJECTION_SECONDS, OutpostsService, minute_values

T0 = 1_800_000_000  # a minute boundary


def epoch(datum: Any) -> float:
    return float(datum.timestamp.replace(tzinfo=dt.UTC).timestamp())  # moto's naive UTC


def test_a_minute_is_connected_only_when_the_link_was_up_throughout_it() -> None:
    history = [(T0 - 30.0, True), (T0 + 130.0, False), (T0 + 250.0, True)]  # cut in minute 2, restored in minute 4
    assert minute_values(history, T0 + 360) == {
        T0: 1.0, T0 + 60: 1.0,
        T0 + 120: 0.0, T0 + 180: 0.0, T0 + 240: 0.0,  # the cut's minute, a whole minute down, the restore's minute
        T0 + 300: 1.0,
    }  # fmt: skip


def test_a_cut_and_restore_within_one_minute_marks_that_minute_only() -> None:
    history = [(T0 + 0.0, True), (T0 + 70.0, False), (T0 + 75.0, True)]
    assert minute_values(history, T0 + 180) == {T0: 1.0, T0 + 60: 0.0, T0 + 120: 1.0}


def test_the_present_state_goes_on_to_the_end_and_nothing_comes_before_the_start() -> None:
    down = minute_values([(T0 + 10.0, True), (T0 + 100.0, False)], T0 + 3600)
    assert min(down) == T0 + 60  # the first whole minute after the link started
    assert down[T0 + 60] == 0.0 and set(down.values()) == {0.0} and max(down) == T0 + 3540
    assert minute_values([], T0 + 600) == {}


def test_the_service_reports_each_outpost_until_an_hour_ahead_and_follows_the_history_at_each_read() -> None:
    history = [(T0 - 600.0, True)]
    service = OutpostsService(lambda: history, ["op-1"], clock=lambda: T0 + 5.0)
    service.add_outpost("op-2")
    data = service.metric_data()
    assert {d.dimensions[0].value for d in data} == {"op-1", "op-2"}
    newest = max(epoch(d) for d in data)
    assert T0 + PROJECTION_SECONDS - 60 <= newest < T0 + PROJECTION_SECONDS + 5
    assert {d.value for d in data} == {1.0} and {(d.namespace, d.name) for d in data} == {
        ("AWS/Outposts", "ConnectedStatus")}
    history.append((T0 + 1.0, False))  # a cut: every point from its minute on is 0 at the next read
    after = {(d.dimensions[0].value, epoch(d)): d.value for d in service.metric_data()}
    assert after[("op-1", T0 - 60)] == 1.0 and after[("op-1", T0)] == 0.0 and after[("op-2", T0 + 1800)] == 0.0
