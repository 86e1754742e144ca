"""One pass over many clusters: at most ``max_concurrent_clusters`` steps at once.

:func:`run_pass` is ``lifeline-agent once``; :class:`Slots` bounds the daemon's first pass.

Each cluster's step runs as it would alone (its own :class:`WatchedAgent`, state directory and deadlines);
a step that fails, raises or hangs changes nothing for the others. Clusters start in the order given and
the outcomes come back in that order. A step that runs past its bound (:func:`progress.step_bound`) is
given up: its slot goes to the next cluster and it is reported ``failed`` with where it is stuck; the pass
does not wait for it (worker threads are daemon threads).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from lifeline_agent.config import AgentConfig
from lifeline_agent.link import LinkMonitor
from lifeline_agent.observability import ClusterHealth, ClusterState
from lifeline_agent.progress import WatchedAgent

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """One cluster's result of the pass; ``link`` is what its link view last saw (``None``: unknown)."""

    health: ClusterHealth
    link: bool | None


@dataclass
class _Run:
    name: str
    agent: WatchedAgent | None = None
    error: str | None = None
    abandoned: bool = False
    done: threading.Event = field(default_factory=threading.Event)

    def outcome(self, config: AgentConfig) -> Outcome:
        if self.agent is None:
            path = str(config.cluster_dir(self.name) / "kubeconfig")
            return Outcome(ClusterHealth(self.name, ClusterState.FAILED, path, last_error=self.error), None)
        health = self.agent.health()
        if self.error is not None:
            health = replace(health, state=ClusterState.FAILED, last_error=self.error)
        return Outcome(health, self.agent.link.last)


class Slots:
    """At most ``limit`` holders at once, served in the order their tickets were taken."""

    def __init__(self, limit: int) -> None:
        self._changed = threading.Condition()
        self._free, self._issued, self._serving = limit, 0, 0
        self._forfeited: set[int] = set()

    def ticket(self) -> int:
        with self._changed:
            self._issued += 1
            return self._issued - 1

    def acquire(self, ticket: int, cancel: threading.Event) -> bool:
        """Wait for the turn of ``ticket`` and a free slot; False once ``cancel`` is set."""
        with self._changed:
            while ticket != self._serving or self._free == 0:
                if cancel.is_set():
                    return False
                self._changed.wait(0.5)
            self._serving += 1
            self._skip_forfeited()
            self._free -= 1
            self._changed.notify_all()
            return True

    def forfeit(self, ticket: int) -> None:
        """``ticket`` will never be used (its thread could not start): the tickets after it do not wait for it."""
        with self._changed:
            self._forfeited.add(ticket)
            self._skip_forfeited()
            self._changed.notify_all()

    def _skip_forfeited(self) -> None:
        while self._serving in self._forfeited:
            self._forfeited.discard(self._serving)
            self._serving += 1

    def release(self) -> None:
        with self._changed:
            self._free += 1
            self._changed.notify_all()


AgentFactory = Callable[[AgentConfig, str, LinkMonitor], WatchedAgent]


class _Pass:
    def __init__(self, config: AgentConfig, names: Sequence[str], link: LinkMonitor, make_agent: AgentFactory):
        self.config, self.link, self.make_agent = config, link, make_agent
        self.runs = [_Run(name) for name in names]
        self._queue = deque(self.runs)
        self._lock = threading.Lock()
        self._changed = threading.Event()

    def start_worker(self) -> None:
        threading.Thread(target=self._work, name="once-worker", daemon=True).start()

    def _next(self) -> _Run | None:
        with self._lock:
            if not self._queue:
                return None
            return self._queue.popleft()

    def _work(self) -> None:
        while (run := self._next()) is not None:
            self._step(run)
            if run.abandoned:  # a replacement worker took this one's slot
                return

    def _step(self, run: _Run) -> None:
        try:
            run.agent = self.make_agent(self.config, run.name, self.link)
            run.agent.watch.begin()
            run.agent.step()
            run.agent.delete_csrs()  # the pass is the agent's whole life: no later step deletes them
        except Exception as exc:  # a bug in one cluster's step must not end the pass for the others
            log.exception("unexpected error in the cluster's step", extra={"cluster": run.name})
            run.error = f"unexpected error: {type(exc).__name__}: {exc}"
        finally:
            if run.agent is not None and run.agent.watch.end():
                run.agent.publish()  # it had been published stuck: publish its real outcome
            run.done.set()
            self._changed.set()

    def give_up_stuck(self) -> None:
        """Publish each step past its bound as failed, once, and hand its slot to a new worker."""
        for run in self.runs:
            agent = run.agent
            if run.done.is_set() or run.abandoned or agent is None:
                continue
            reason = agent.watch.check(agent.publish)
            if reason is not None:
                log.error("%s; the pass goes on without it", reason, extra={"cluster": run.name})
                run.abandoned = True
                self.start_worker()

    def finished(self) -> bool:
        """True when no run is left to wait for; cleared first, so an end after the check wakes :meth:`wait`."""
        self._changed.clear()
        return all(run.done.is_set() or run.abandoned for run in self.runs)

    def wait(self, tick: float) -> None:
        self._changed.wait(tick)


def run_pass(config: AgentConfig, names: Sequence[str], link: LinkMonitor, *,
             make_agent: AgentFactory | None = None, tick: float = 0.5) -> list[Outcome]:  # fmt: skip
    """Step every cluster of ``names`` once, ``config.concurrency(len(names))`` at a time; outcomes in order."""
    factory: AgentFactory = make_agent or _watched_agent
    one_pass = _Pass(config, names, link, factory)
    for _ in range(config.concurrency(len(names))):
        one_pass.start_worker()
    while not one_pass.finished():
        one_pass.wait(tick)
        one_pass.give_up_stuck()
    return [run.outcome(config) for run in one_pass.runs]


def _watched_agent(config: AgentConfig, name: str, link: LinkMonitor) -> WatchedAgent:
    return WatchedAgent(config, name, link)

