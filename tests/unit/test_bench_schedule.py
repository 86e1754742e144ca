"""The outage benchmark's schedule check accepts every renewal the agent's own rule can make, and only those."""

from __future__ import annotations

import random

from lifeline_agent.deadline import renewal_deadline

from bench.outage import LIFETIME, SIGNING_SECONDS, check_schedule
from bench.schedule import deadline_window

STEP_SECONDS = 0.2  # a renewal's own time, from its deadline to the install


def renewals_drawn_by_the_agent(count: int, rng: random.Random) -> list[tuple[float, float]]:
    """(install time, notAfter) of ``count`` renewals after a first certificate, each at a deadline the rule drew."""
    issued, not_after = 0.0, float(SIGNING_SECONDS)
    installs = [(issued, not_after)]
    for _ in range(count):
        issued = renewal_deadline(not_after - LIFETIME, not_after, rng, received_at=issued) + STEP_SECONDS
        not_after = issued + SIGNING_SECONDS
        installs.append((issued, not_after))
    return installs


def test_every_renewal_at_a_deadline_the_agent_draws_is_on_schedule() -> None:
    schedule = check_schedule(renewals_drawn_by_the_agent(300, random.Random(11)))
    assert schedule["renewals_checked"] == 300
    assert (schedule["early"], schedule["late"], schedule["installed_after_predecessor_expired"]) == ([], [], [])
    assert schedule["on_schedule"]


def test_a_late_renewal_is_named_and_the_shortest_gap_is_recorded() -> None:
    late = check_schedule([(0.0, 60.0), (59.5, 119.5)])  # the latest deadline is 54 s after arrival, + 5 s slack
    assert late["late"] and not late["on_schedule"]
    assert check_schedule([(0.0, 60.0), (45.0, 105.0), (45.5, 105.5)])["shortest_seconds_between_renewals"] == 0.5


def test_the_window_spans_every_deadline_of_the_rule() -> None:
    rng = random.Random(5)
    for lifetime in (30.0, 60.0, 100.0, 600.0, 86400.0):
        not_before, not_after = -300.0, lifetime
        earliest, latest = deadline_window(not_before, not_after, 0.0)
        drawn = [renewal_deadline(not_before, not_after, rng, received_at=0.0) for _ in range(2000)]
        # to within a step of the grid (0.05 % of the lifetime), which the check's 1 s tolerance covers
        step = (not_after - not_before) * 0.2 / 400
        assert earliest - step <= min(drawn) and max(drawn) <= latest + step, lifetime
