"""Fixtures of the reliability suite: seeded clusters and ``lifeline-agent run`` children that are always reaped."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from lab.agentkit import AgentProcess, seeded_cluster


@pytest.fixture
def cluster(lab: Any) -> str:
    """A fresh local cluster, seeded as the Region workflow leaves it (secret + RBAC)."""
    return seeded_cluster(lab, "rel")


@pytest.fixture
def agents() -> Iterator[list[AgentProcess]]:
    """Append every started :class:`AgentProcess`; all are stopped after the test."""
    started: list[AgentProcess] = []
    yield started
    for agent in started:
        agent.stop()
