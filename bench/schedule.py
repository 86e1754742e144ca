"""The agent's renewal deadline rule (``lifeline_agent.deadline.renewal_deadline``) at every point of its random
range, for the benchmarks that check or plan around it (outage, fleet).

For one certificate the rule is one of two (the kubelet's point, or the same fraction of what was left at
arrival), picked by the certificate, not by the draw; the window is taken over the whole range all the same, so
that it holds whichever rule the agent applies.
"""

from __future__ import annotations

import random

STEPS = 400


class FixedPoint(random.Random):
    """A stand-in for the agent's random source: ``uniform(a, b)`` is one point of the range (0 = a, 1 = b)."""

    def __init__(self, point: float) -> None:
        super().__init__(0)
        self.point = point

    def uniform(self, a: float, b: float) -> float:
        return a + self.point * (b - a)


def deadlines(not_before: float, not_after: float, received_at: float, steps: int = STEPS) -> list[float]:
    """The rule's deadline at ``steps + 1`` evenly spread points of its random range (each equally likely)."""
    from lifeline_agent.deadline import renewal_deadline

    return [renewal_deadline(not_before, not_after, FixedPoint(i / steps), received_at=received_at)
            for i in range(steps + 1)]  # fmt: skip


def deadline_window(not_before: float, not_after: float, received_at: float) -> tuple[float, float]:
    """The earliest and the latest renewal deadline the agent can draw for this certificate (to within one step of
    the grid: a 2000th of the lifetime)."""
    every = deadlines(not_before, not_after, received_at)
    return min(every), max(every)
