"""The service: one reconcile thread per cluster, a link probe, sd_notify, a clean stop on SIGTERM.

The systemd watchdog is pinged only while every cluster loop makes progress (:mod:`lifeline_agent.progress`).
The first step of the loops (the start-up pass: bootstraps, the first verify) runs at most
``max_concurrent_clusters`` at once, in the order the loops started (by cluster name); the loops' later
steps are spread by their own deadlines.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType

from lifeline_agent.config import MAX_CLUSTERS, AgentConfig
from lifeline_agent.fleet import Slots
from lifeline_agent.link import LinkMonitor, probe_region
from lifeline_agent.observability import ClusterState, Observer, SystemdNotifier
from lifeline_agent.progress import WatchedAgent
from lifeline_agent.readiness import ReadinessReporter
from lifeline_agent.region import RegionError, list_cluster_names
from lifeline_agent.regionless import NoLink
from lifeline_agent.store import known_clusters

log = logging.getLogger(__name__)


def make_link_monitor(config: AgentConfig, observer: Observer | None) -> LinkMonitor:
    """The service link probe; none at all (:class:`NoLink`) when every cluster is Region-less."""
    if not config.needs_region:
        return NoLink()

    def probe() -> bool:
        return probe_region(region=config.region, endpoint_url=config.aws_endpoint_url, timeout=config.probe_timeout)

    return LinkMonitor(probe, config.probe_interval, observer.link if observer is not None else None)


def cluster_names(config: AgentConfig, link: LinkMonitor) -> list[str]:
    """The configured clusters; for ``clusters = "all"`` the Region's list while connected, else the cached ones."""
    names = [settings.name for settings in config.clusters]
    if config.all_clusters:
        found: list[str] = []
        if link.is_up():
            try:
                found = list_cluster_names(region=config.region, endpoint_url=config.aws_endpoint_url,
                                           timeout=config.timing.api_timeout)  # fmt: skip
            except RegionError as exc:
                log.warning("cannot list the cluster secrets: %s", exc)
        names += [n for n in found + known_clusters(config.state_dir) if n not in names]
    return sorted(dict.fromkeys(names))


_import_lock = threading.Lock()


def preload_libraries() -> None:
    """Import the heavy library (botocore; the agent never needs boto3), one thread at a time. The agent
    imports it lazily (start-up and footprint), but two threads importing one package at once can see it
    half initialised (``ImportError: cannot import name ...``), which costs that cluster a back-off."""
    with _import_lock:
        import botocore.client  # noqa: F401
        import botocore.config  # noqa: F401
        import botocore.session  # noqa: F401


class Daemon:
    """``lifeline-agent run``: keeps every cluster's kubeconfig current until :meth:`stop`."""

    def __init__(self, config: AgentConfig, observer: Observer, notifier: SystemdNotifier) -> None:
        self.config, self.observer, self.notifier = config, observer, notifier
        self.link = make_link_monitor(config, observer)
        self.agents: dict[str, WatchedAgent] = {}
        self._stuck: set[str] = set()
        self._left_out: tuple[str, ...] = ()  # clusters wanted but not running
        self._over_limit: tuple[str, ...] = ()
        self._wake: dict[str, threading.Event] = {}
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._first_steps = Slots(config.max_concurrent_clusters)
        self._ready = False
        self.readiness = ReadinessReporter(config, observer.snapshot, self.link, observer)

    def stop(self, *_: object) -> None:
        self._stopping.set()
        for event in self._wake.values():
            event.set()

    def install_signal_handlers(self) -> None:
        def handler(signum: int, _frame: FrameType | None) -> None:
            log.info("stopping on %s", signal.Signals(signum).name)
            self.stop()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGUSR1, lambda *_: self.renew_all("renewal requested (SIGUSR1)"))

    def renew_all(self, reason: str) -> None:
        """Every cluster renews its certificate now, whatever its deadline (``systemctl kill -s USR1``)."""
        for name, agent in list(self.agents.items()):
            agent.request_renewal(reason)
            self._wake[name].set()

    def _start_clusters(self, names: list[str]) -> None:
        """A loop for each of ``names`` not running yet, up to :data:`MAX_CLUSTERS`; the clusters past the limit are
        named once, and those past it or whose thread could not start are tried again while the agent runs."""
        over_limit, not_started = [], []
        for name in names:
            if name in self.agents:
                continue
            if len(self.agents) >= MAX_CLUSTERS:
                over_limit.append(name)
            elif not self._start_cluster(name):
                not_started.append(name)
        if over_limit and tuple(over_limit) != self._over_limit:
            log.error("%d cluster(s) not kept by this agent: %s (at most %d per agent, a thread each; the unit's "
                      "TasksMax is 128): give them to another agent", len(over_limit), ", ".join(over_limit),
                      MAX_CLUSTERS)  # fmt: skip
        self._over_limit = tuple(over_limit)
        self._left_out = tuple(over_limit + not_started)

    def _start_cluster(self, name: str) -> bool:
        agent = WatchedAgent(self.config, name, self.link, self.observer)
        wake = threading.Event()
        self.agents[name], self._wake[name] = agent, wake
        agent.publish()
        ticket = self._first_steps.ticket()
        thread = threading.Thread(target=self._cluster_loop, args=(agent, wake, ticket), name=f"cluster-{name}",
                                  daemon=True)  # fmt: skip
        try:
            thread.start()
        except RuntimeError as exc:  # no thread to be had (the unit's TasksMax)
            self._first_steps.forfeit(ticket)
            del self.agents[name], self._wake[name]
            log.error("cannot start the cluster's loop: %s (tried again in %g s)", exc, self.config.probe_interval,
                      extra={"cluster": name})  # fmt: skip
            return False
        self._threads.append(thread)
        return True

    def _cluster_loop(self, agent: WatchedAgent, wake: threading.Event, turn: int) -> None:
        # first thing in the thread: a turn never taken would leave every later cluster waiting
        if not self._first_steps.acquire(turn, self._stopping):
            return
        try:
            if self.config.needs_region:  # a Region-less agent never needs botocore
                preload_libraries()
            delay = self._step(agent)
        finally:
            self._first_steps.release()
        while True:
            wake.wait(delay)
            wake.clear()
            if self._stopping.is_set():
                agent.delete_csrs()  # what its steps have not deleted yet
                return
            delay = self._step(agent)

    def _step(self, agent: WatchedAgent) -> float:
        agent.watch.begin()  # once the slot is taken: waiting for one is not a stuck step
        try:
            delay = agent.step()
        except Exception:  # a bug must not end this cluster's loop: log it, back off, go on
            log.exception("unexpected error in the reconcile loop", extra={"cluster": agent.cluster})
            delay = self.config.timing.backoff_cap
        if agent.watch.end():
            agent.publish()
        return delay

    def run(self, *, sleep: Callable[[float], bool] | None = None) -> int:
        """Run until stopped; returns the exit code (0 after a clean stop)."""
        wait = sleep or self._stopping.wait
        probing = self.config.needs_region  # every cluster Region-less: no link to probe
        if probing:
            self.notifier.status("starting: probing the service link")
            self.link.is_up(fresh=True)
        names = [] if self._stopping.is_set() else cluster_names(self.config, self.link)
        if not names:
            log.warning("no cluster to manage yet (clusters = \"all\" and no lifeline/ secret found)")
        self._start_clusters(names)
        self.readiness.start(self._stopping)
        watchdog = self.notifier.watchdog_interval()
        tick = min(self.config.probe_interval, watchdog or self.config.probe_interval, 5.0)
        last_probe = last_scan = last_retry = time.monotonic()
        retry_every = self.config.probe_interval  # a cluster whose thread could not start
        refresh = self.config.timing.secret_refresh_interval
        was_up = self.link.last
        while not self._stopping.is_set():
            stuck = self._check_progress()
            self._report()
            if watchdog is not None and not stuck:
                self.notifier.watchdog()
            if wait(tick):
                break
            if self._left_out and len(self.agents) < MAX_CLUSTERS and time.monotonic() - last_retry >= retry_every:
                last_retry = time.monotonic()
                self._start_clusters(list(self._left_out))
            if probing and time.monotonic() - last_probe >= self.config.probe_interval:
                last_probe = time.monotonic()
                up = self.link.is_up(fresh=True)
                if up and not was_up:
                    self._on_link_restored()
                elif up and self.config.all_clusters and time.monotonic() - last_scan >= refresh:
                    self._start_new_clusters()
                    last_scan = time.monotonic()
                was_up = up
        self.notifier.stopping()
        self.notifier.status("stopping")
        for thread in self._threads:
            thread.join(timeout=self.config.timing.api_timeout + 5)
        self.readiness.join(timeout=self.readiness.timeout + 1)
        log.info("stopped")
        return 0

    def _check_progress(self) -> bool:
        """Publish every cluster stuck in one step past its bound as failed; True when there is one."""
        stuck: set[str] = set()
        for name, agent in list(self.agents.items()):
            reason = agent.watch.check(agent.publish)
            if reason is None:
                if name in self._stuck:
                    log.warning("the reconcile loop moves again", extra={"cluster": name})
                continue
            stuck.add(name)
            if name not in self._stuck:
                log.error("%s; the systemd watchdog is no longer pinged", reason, extra={"cluster": name})
        self._stuck = stuck
        return bool(stuck)

    def _start_new_clusters(self) -> None:
        """With ``clusters = "all"``: start a loop for each secret that appeared since the last look."""
        new = [name for name in cluster_names(self.config, self.link) if name not in self.agents]
        for name in new:
            log.info("new cluster secret found", extra={"cluster": name})
        self._start_clusters(new)

    def _on_link_restored(self) -> None:
        if self.config.all_clusters:
            self._start_new_clusters()
        for name, agent in self.agents.items():
            if agent.state in (ClusterState.NEEDS_LINK, ClusterState.FAILED, ClusterState.PENDING):
                self._wake[name].set()

    def _report(self) -> None:
        snapshot = self.observer.snapshot()
        counts: dict[str, int] = {}
        for health in snapshot:
            counts[health.state.value] = counts.get(health.state.value, 0) + 1
        link = {True: "connected", False: "disconnected", None: "unknown"}[self.link.last]
        link = link if self.config.needs_region else "not used (Region-less)"
        summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "no clusters"
        if not self._ready:  # READY once the loops run: systemd must not wait for a first bootstrap
            self._ready = True
            self.notifier.ready(f"{summary}; link {link}")
        else:
            self.notifier.status(f"{summary}; link {link}")
