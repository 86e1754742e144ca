"""Link awareness: a cheap probe of the Region (STS ``GetCallerIdentity``) with short timeouts."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


def probe_region(*, region: str | None, endpoint_url: str | None, timeout: float) -> bool:
    """True when STS answers within ``timeout``; any failure (timeout, refused, denied) counts as down."""
    from lifeline_agent.region import aws_client

    try:
        aws_client("sts", region=region, endpoint_url=endpoint_url, timeout=timeout).get_caller_identity()
    except Exception as exc:  # noqa: BLE001 - every failure means the same thing here: no usable link
        log.debug("link probe failed: %s", type(exc).__name__)
        return False
    return True


class LinkMonitor:
    """Remembers the last probe result; probes again when it is older than ``interval``.

    ``is_up(fresh=True)`` wants a result from a probe that started after the call: the clusters that asked
    while one probe ran (a fleet's first pass) share the next one instead of queueing for one each.
    ``is_up(since=t)`` takes a probe that started at ``t`` (``time.monotonic()``) or later: one step probes once.
    ``report`` gets every result (the Observer logs changes and sets ``lifeline_service_link_up``).
    """

    def __init__(self, probe: Callable[[], bool], interval: float,
                 report: Callable[[bool], None] | None = None) -> None:  # fmt: skip
        self._probe, self.interval, self._report = probe, interval, report
        self._lock = threading.Lock()
        self._up: bool | None = None
        self._checked = self._started = float("-inf")

    @property
    def last(self) -> bool | None:
        return self._up

    def is_up(self, *, fresh: bool = False, since: float | None = None) -> bool:
        since = time.monotonic() if fresh else since
        with self._lock:
            stale = self._started < since if since is not None else time.monotonic() - self._checked >= self.interval
            if stale:
                self._started = time.monotonic()
                self._up = self._probe()
                self._checked = time.monotonic()
                if self._report is not None:
                    self._report(self._up)
            return bool(self._up)
