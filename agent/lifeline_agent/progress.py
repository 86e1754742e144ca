"""Is each cluster loop making progress? A step that runs past its bound is a stuck thread.

The daemon stops pinging the systemd watchdog while any cluster is stuck (systemd then restarts the
agent), and publishes that cluster as ``failed`` with where its thread is and for how long.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lifeline_agent.config import AgentConfig
from lifeline_agent.link import LinkMonitor
from lifeline_agent.observability import ClusterHealth, ClusterState, Observer
from lifeline_agent.reconcile import ClusterAgent

# API-server and Region calls one step can make, each up to its deadline: the secret, verifying the installed
# kubeconfig (who am I, access review, read), then a renewal (create, read, approve) and verifying the new
# kubeconfig, with a failover to another address on the way; or, instead of a renewal, deleting earlier CSRs.
STEP_CALLS = 12


def step_bound(config: AgentConfig) -> float:
    """The longest one honest reconcile step can take: the CSR wait, every call at its deadline, two link probes."""
    timing = config.timing
    return timing.csr_timeout + STEP_CALLS * timing.api_timeout + 2 * config.probe_timeout


class StepWatch:
    """When the current step of one cluster loop started, and whether it was reported stuck."""

    def __init__(self, bound: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.bound, self._clock = bound, clock
        self._lock = threading.Lock()
        self._started: float | None = None
        self._thread: int | None = None
        self.reason: str | None = None

    def begin(self) -> None:
        with self._lock:
            self._started, self._thread, self.reason = self._clock(), threading.get_ident(), None

    def end(self) -> bool:
        """The step is over; True when it had been reported stuck (its real outcome must be published again)."""
        with self._lock:
            reported = self.reason is not None
            self._started = self._thread = self.reason = None
            return reported

    def check(self, publish: Callable[[], None]) -> str | None:
        """While the step runs past the bound: set :attr:`reason`, call ``publish`` and return the reason.

        ``publish`` runs under the lock, so a step that ends meanwhile is published after it, not before.
        """
        with self._lock:
            if self._started is None:
                return None
            elapsed = self._clock() - self._started
            if elapsed <= self.bound:
                return None
            self.reason = (f"stuck in {_where(self._thread)} for {elapsed:.0f} s "
                           f"(a step may take {self.bound:.0f} s)")  # fmt: skip
            publish()
            return self.reason


class WatchedAgent(ClusterAgent):
    """A cluster agent whose published health says ``failed`` while its step is reported stuck."""

    def __init__(self, config: AgentConfig, cluster: str, link: LinkMonitor, observer: Observer | None = None,
                 **options: Any) -> None:  # fmt: skip
        super().__init__(config, cluster, link, observer, **options)
        self.watch = StepWatch(step_bound(config))

    def health(self) -> ClusterHealth:
        health = super().health()
        reason = self.watch.reason
        if reason is None:
            return health
        return dataclasses.replace(health, state=ClusterState.FAILED, last_error=reason)


def _where(thread: int | None) -> str:
    """The innermost agent function the thread is in (``fetch_secret (region.py:41)``), else a reconcile step."""
    frame = sys._current_frames().get(thread) if thread is not None else None
    if frame is None:
        return "a reconcile step"
    stack = traceback.extract_stack(frame)
    ours = [entry for entry in stack if f"{Path(__file__).parent.name}/" in entry.filename] or stack
    entry = ours[-1]
    return f"{entry.name} ({Path(entry.filename).name}:{entry.lineno})"
