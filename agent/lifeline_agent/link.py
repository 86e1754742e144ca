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
    """Remembers the last probe result; probes again when it is older than ``interval``."""

    def __init__(self, probe: Callable[[], bool], interval: float,
                 on_change: Callable[[bool], None] | None = None) -> None:  # fmt: skip
        self._probe, self.interval, self._on_change = probe, interval, on_change
        self._lock = threading.Lock()
        self._up: bool | None = None
        self._checked = float("-inf")

    @property
    def last(self) -> bool | None:
        return self._up

    def is_up(self, *, fresh: bool = False) -> bool:
        with self._lock:
            if fresh or time.monotonic() - self._checked >= self.interval:
                up = self._probe()
                self._checked = time.monotonic()
                if up != self._up:
                    state = "connected" if up else "disconnected"
                    log.log(logging.INFO if up else logging.WARNING, "link %s", state, extra={"link": state})
                    if self._on_change is not None:
                        self._on_change(up)
                self._up = up
            return bool(self._up)
