"""AWS's Outposts service in the lab Region: ``AWS/Outposts`` ``ConnectedStatus``, from the lab's service link.

AWS publishes ``ConnectedStatus`` for each Outpost (dimension ``OutpostId``), one datapoint a minute: 1 while the
Outpost's service link is connected, 0 while it is not. The lab derives it from its service link's history of
cuts and restores (``ServiceLink.history``; one link carries every Outpost of the lab): the point of a minute is
1 when the link was up throughout that minute, else 0.

moto asks each ``CloudWatchMetricProvider`` for its datapoints on every read (GetMetricStatistics, GetMetricData,
ListMetrics); the points are computed then, so a cut or a restore changes every point after it at once and
nothing stale stays in the Region. Time passes without waiting: the series goes on ``PROJECTION_SECONDS`` past
the present with the link's present state, so that an alarm can be evaluated (lab/alarms.py) at a chosen time up
to then, as CloudWatch would evaluate it then if the link stayed as it is.
"""

from __future__ import annotations

import datetime as dt
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from moto.cloudwatch.models import MetricDatum
from moto.core.common_models import CloudWatchMetricProvider

NAMESPACE = "AWS/Outposts"
METRIC = "ConnectedStatus"
DIMENSION = "OutpostId"
MINUTE = 60
PROJECTION_SECONDS = 3600

History = Sequence[tuple[float, bool]]  # (wall-clock time, link up), oldest first; the first is the link's start


def minute_values(history: History, end: float) -> dict[int, float]:
    """Minute start -> 1.0 (the link up throughout that minute) or 0.0, for every whole minute from the start of
    ``history`` until ``end``; the last state of ``history`` goes on until then."""
    if not history:
        return {}
    downs = [(at, history[i + 1][0] if i + 1 < len(history) else math.inf)
             for i, (at, up) in enumerate(history) if not up]  # fmt: skip
    first = math.ceil(history[0][0] / MINUTE) * MINUTE
    return {minute: 0.0 if any(down < minute + MINUTE and up > minute for down, up in downs) else 1.0
            for minute in range(first, math.ceil(end), MINUTE)}  # fmt: skip


class OutpostsService:
    """``ConnectedStatus`` of the lab's Outposts, from ``history`` (the service link's)."""

    def __init__(self, history: Callable[[], History], outpost_ids: Iterable[str] = (), *,
                 clock: Callable[[], float] = time.time) -> None:  # fmt: skip
        self.history, self.clock = history, clock
        self._outposts = set(outpost_ids)
        self._lock = threading.Lock()

    def add_outpost(self, outpost_id: str) -> None:
        with self._lock:
            self._outposts.add(outpost_id)

    @property
    def outpost_ids(self) -> list[str]:
        with self._lock:
            return sorted(self._outposts)

    @property
    def horizon(self) -> float:
        """The newest time the series reaches (the present plus the projection)."""
        return self.clock() + PROJECTION_SECONDS

    def metric_data(self) -> list[MetricDatum]:
        values = minute_values(self.history(), self.horizon)
        # moto keeps timestamps as naive UTC datetimes (it parses a request's that way)
        return [MetricDatum(NAMESPACE, METRIC, value, [{"Name": DIMENSION, "Value": outpost}],
                            dt.datetime.fromtimestamp(minute, dt.UTC).replace(tzinfo=None), "Count")
                for outpost in self.outpost_ids for minute, value in values.items()]  # fmt: skip


_published: dict[tuple[str, str], OutpostsService] = {}


def publish(service: OutpostsService, account_id: str, region: str) -> None:
    """From now on the Region (``account_id``, ``region``) of this process has ``service``'s metric."""
    _published[(account_id, region)] = service


def withdraw(account_id: str, region: str) -> None:
    _published.pop((account_id, region), None)


class _ConnectedStatusProvider(CloudWatchMetricProvider):
    # moto finds its metric providers as the subclasses of CloudWatchMetricProvider
    @staticmethod
    def get_cloudwatch_metrics(account_id: str, region: str) -> Any:
        service = _published.get((account_id, region))
        return [] if service is None else service.metric_data()
