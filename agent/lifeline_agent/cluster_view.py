"""One cluster's endpoint, CA and addresses as this host trusts them, for :class:`ClusterAgent`'s steps.

The view is ``cluster.json``, refreshed from the Region's secret when due and the link is up, through the
trust gate: a new endpoint or CA is used only once EKS confirms it. A Region-less cluster's view comes
from its configuration alone.
"""

from __future__ import annotations

import logging
import time

from lifeline_agent import regionless
from lifeline_agent.config import AgentConfig
from lifeline_agent.contract import ClusterSecret, ContractError
from lifeline_agent.link import LinkMonitor
from lifeline_agent.region import RegionError, describe_cluster, fetch_secret
from lifeline_agent.resolver import endpoint_host_port, resolve
from lifeline_agent.store import CachedCluster, ClusterStore, StoreError
from lifeline_agent.trust import TrustGate

log = logging.getLogger(__name__)


class NeedsLink(Exception):
    """This step needs the Region (bootstrap, expired certificate) and the link is down."""


class ClusterView:
    def __init__(self, config: AgentConfig, cluster: str, store: ClusterStore, link: LinkMonitor) -> None:
        self.config, self.cluster, self.store, self.link = config, cluster, store, link
        self.settings = config.cluster(cluster)
        self._checked = float("-inf")  # time.monotonic() of the last look at the Region's secret
        self.asked = float("-inf")  # time.monotonic() when the current step asked for the view
        self._trust = TrustGate(store, lambda: describe_cluster(
            cluster, region=config.region, endpoint_url=config.aws_endpoint_url, timeout=config.timing.api_timeout))

    def current(self, now: float) -> CachedCluster:
        """The view for this step; :class:`NeedsLink` when there is none yet and the Region is out of reach."""
        self.asked = time.monotonic()  # a link probe started since then is this step's: one probe per step
        if self.settings.regionless:  # the operator's configuration is the trust anchor: no Region at all
            return regionless.cached_view(self.settings, self.store, now, self.config.timing, self.addresses)
        try:
            cached = self.store.load_cache()
        except StoreError as exc:
            if not self.link.is_up():
                raise
            log.warning("cached cluster secret unusable, fetching it again: %s", exc, extra={"cluster": self.cluster})
            cached = None
        due = cached is None or time.monotonic() - self._checked >= self.config.timing.secret_refresh_interval
        if cached is not None and not due:
            return cached
        if not self.link.is_up():
            if cached is None:
                raise NeedsLink("no cached cluster secret yet and the service link is down")
            return cached
        try:
            secret = fetch_secret(self.cluster, region=self.config.region, endpoint_url=self.config.aws_endpoint_url,
                                  timeout=self.config.timing.api_timeout)  # fmt: skip
            fresh = CachedCluster(secret=secret, ips=self.addresses(secret, cached), fetched_at=now)
            used = self._trust.accept(cached, fresh)
        except (RegionError, ContractError) as exc:
            if cached is None:
                raise
            log.warning("keeping the cached cluster secret: %s", exc, extra={"cluster": self.cluster})
            self._checked = time.monotonic() - self.config.timing.secret_refresh_interval + self.config.probe_interval
            return cached
        self._checked = time.monotonic()
        return used

    def seconds_to_refresh(self) -> float:
        """Seconds until the Region's secret is due to be read again (negative: overdue)."""
        return self._checked + self.config.timing.secret_refresh_interval - time.monotonic()

    def settle(self, used: CachedCluster) -> None:
        """After a step that succeeded with ``used``: see :meth:`TrustGate.settle`."""
        self._trust.settle(used)

    def addresses(self, secret: ClusterSecret, cached: CachedCluster | None) -> tuple[str, ...]:
        """The endpoint's addresses: pinned ones first, then what resolves now (or what was cached for it)."""
        host, port = endpoint_host_port(secret.endpoint)
        resolved = resolve(host, port)
        if not resolved and cached is not None and cached.secret.endpoint == secret.endpoint:
            resolved = list(cached.ips)
        pinned = list(self.settings.endpoint_ips)
        return tuple(dict.fromkeys(pinned + resolved))
