"""Readiness in the Region: while the link is up, each cluster's offline access as CloudWatch metrics.

Per cluster (dimension ``ClusterName``) in the ``Lifeline`` namespace, the one the agent's IAM policy allows:

- ``OfflineAccessReady``: 1 when this host holds a verified, unexpired offline kubeconfig (what ``/healthz``
  checks), else 0. Several hosts serving one cluster report into the same series: its ``Maximum`` is 1 when
  any of them is ready, which is what the workflow's per-cluster alarm asks.
- ``OfflineAccessSecondsLeft``: seconds until the installed certificate expires (0 without one).

Reporting runs beside the renewal loops, never in them: one ``PutMetricData`` per pass (``once``) or per
``readiness_interval`` (``run``, its own thread), with a short timeout and no retries. It is skipped, without
a word, while the last link probe said the link is down; a failed call is logged when its error changes and
counted (``lifeline_readiness_reports``). Region-less clusters have no Region and are not reported.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from lifeline_agent.config import AgentConfig
from lifeline_agent.contract import CLUSTER_DIMENSION, READINESS_NAMESPACE, READY_METRIC, SECONDS_LEFT_METRIC
from lifeline_agent.link import LinkMonitor
from lifeline_agent.observability import ClusterHealth, Observer, readiness_problem
from lifeline_agent.region import RegionError, put_metric_data

log = logging.getLogger(__name__)

MAX_DATA_PER_CALL = 1000  # PutMetricData's limit of metric data entries per request
MAX_REPORT_TIMEOUT = 5.0  # seconds; never longer than the configured api_timeout
FIRST_REPORT_DELAY = 10.0  # seconds after start: the start-up pass has usually verified the kubeconfigs by then


def readiness_data(healths: Sequence[ClusterHealth], now: float) -> list[dict[str, Any]]:
    """The metric data entries for ``healths`` at ``now``: two per cluster."""
    timestamp = dt.datetime.fromtimestamp(now, dt.UTC)
    data: list[dict[str, Any]] = []
    for health in healths:
        dimensions = [{"Name": CLUSTER_DIMENSION, "Value": health.cluster}]
        ready = readiness_problem(health, now) is None
        left = max(0.0, health.certificate_not_after - now) if health.certificate_not_after is not None else 0.0
        data += [
            {"MetricName": READY_METRIC, "Dimensions": dimensions, "Timestamp": timestamp,
             "Value": 1.0 if ready else 0.0, "Unit": "None"},
            {"MetricName": SECONDS_LEFT_METRIC, "Dimensions": dimensions, "Timestamp": timestamp,
             "Value": float(round(left)), "Unit": "Seconds"},
        ]  # fmt: skip
    return data


class ReadinessReporter:
    """Sends the readiness of the clusters ``healths()`` returns, when enabled and the link is up."""

    def __init__(self, config: AgentConfig, healths: Callable[[], Sequence[ClusterHealth]], link: LinkMonitor,
                 observer: Observer | None = None, *, clock: Callable[[], float] = time.time) -> None:  # fmt: skip
        self.config, self.healths, self.link, self.observer, self.clock = config, healths, link, observer, clock
        self.timeout = min(MAX_REPORT_TIMEOUT, config.timing.api_timeout)
        self._last_error: str | None = None
        self._thread: threading.Thread | None = None

    @property
    def enabled(self) -> bool:
        return self.config.readiness_metrics and self.config.needs_region

    def report(self, *, probe_if_unknown: bool = False) -> bool:
        """One report now; True when CloudWatch took it. Never raises. ``probe_if_unknown``: probe the link
        first when nothing has probed it yet (``once`` with every kubeconfig current)."""
        if not self.enabled:
            return False
        if probe_if_unknown and self.link.last is None:
            self.link.is_up()
        if self.link.last is not True:
            return False
        healths = [h for h in self.healths() if not self.config.cluster(h.cluster).regionless]
        data = readiness_data(healths, self.clock())
        try:
            for start in range(0, len(data), MAX_DATA_PER_CALL):
                put_metric_data(READINESS_NAMESPACE, data[start:start + MAX_DATA_PER_CALL], region=self.config.region,
                                endpoint_url=self.config.aws_endpoint_url, timeout=self.timeout)  # fmt: skip
        except (RegionError, ValueError, TypeError) as exc:
            self._count("failure")
            message = str(exc)
            if self.link.last and message != self._last_error:  # a cut link is not news: the probe says so
                log.warning("cannot report readiness to CloudWatch: %s", message)
            self._last_error = message
            return False
        if self._last_error is not None:
            log.info("readiness reported to CloudWatch again")
        self._last_error = None
        self._count("success")
        return True

    def _count(self, result: str) -> None:
        if self.observer is not None:
            self.observer.readiness_report(result)

    def start(self, stopping: threading.Event) -> None:
        """Report every ``readiness_interval`` on a thread of its own until ``stopping`` is set."""
        if not self.enabled or self._thread is not None:
            return

        def loop() -> None:
            delay = min(self.config.readiness_interval, FIRST_REPORT_DELAY)
            while not stopping.wait(delay):
                delay = self.config.readiness_interval
                try:
                    self.report()
                except Exception:  # a bug here must not end the reports (nor touch renewal)
                    log.exception("unexpected error reporting readiness")

        self._thread = threading.Thread(target=loop, name="readiness-reporter", daemon=True)
        self._thread.start()

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
