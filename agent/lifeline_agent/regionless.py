"""Region-less clusters: the operator's configuration, not the Region, says where the API server is.

A cluster configured with ``endpoint`` and a CA (inline, a file, or the bootstrap kubeconfig's) and a
``bootstrap_kubeconfig`` needs no Secrets Manager, no EKS, no STS and no link probe: its trust anchor is
the configuration file (which the agent refuses when others could change it). The reconcile loop is the
same as for a Region cluster; only two things differ, both here:

- the cached view (``cluster.json``) is built from the configuration (:func:`cached_view`), never
  fetched and never given to the trust gate;
- the cluster's loop consults :class:`NoLink` instead of the service link: a bootstrap, and a new
  bootstrap after an expired certificate, use the bootstrap credential and never wait for the Region.

Renewals use the current certificate, exactly as for a Region cluster; every certificate still passes
admission, is verified against the API server on its own and is installed atomically.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

from lifeline_agent.config import ClusterSettings, Timing
from lifeline_agent.contract import ClusterSecret
from lifeline_agent.link import LinkMonitor
from lifeline_agent.store import CACHE, CachedCluster, ClusterStore, ConfiguredCluster, StoreError

log = logging.getLogger(__name__)

Addresses = Callable[[ClusterSecret, CachedCluster | None], tuple[str, ...]]


class LinkNotUsed(RuntimeError):
    """Something tried to probe the service link for a cluster that does not use it (a bug)."""


def _never_probed() -> bool:
    raise LinkNotUsed("a Region-less cluster never probes the service link")


class NoLink(LinkMonitor):
    """The link of a Region-less cluster, or of an agent without Region clusters: there is nothing to probe.

    ``is_up`` is True (the API server is reached directly, the Region is never needed); ``last`` is
    ``None``: the link was never probed, so status shows it as unknown, and no secret refresh is scheduled.
    """

    def __init__(self) -> None:
        super().__init__(_never_probed, math.inf)

    @property
    def last(self) -> bool | None:
        return None

    def is_up(self, *, fresh: bool = False, since: float | None = None) -> bool:
        return True


def configured_cluster(settings: ClusterSettings) -> ConfiguredCluster:
    """The view of a Region-less cluster, from its settings; :class:`ValueError` for a Region cluster."""
    if settings.endpoint is None or settings.ca_pem is None:
        raise ValueError(f"cluster {settings.name} is not Region-less: it has no configured endpoint and CA")
    return ConfiguredCluster.configured(settings.name, settings.endpoint, settings.ca_pem, settings.breakglass_group)


def cached_view(settings: ClusterSettings, store: ClusterStore, now: float, timing: Timing,
                addresses: Addresses) -> CachedCluster:  # fmt: skip
    """The cached view of a Region-less cluster: the configuration's endpoint, CA and group, with the endpoint's
    addresses (configured ``endpoint_ips`` first, then DNS; the cached ones while DNS fails). ``cluster.json``
    is rewritten when the configuration changed (also over a Region secret cached before) and the addresses
    are resolved again every ``secret_refresh_interval``."""
    view = configured_cluster(settings)
    try:
        cached = store.load_cache()
    except StoreError as exc:
        log.warning("cached cluster view unusable, writing it from the configuration: %s", exc,
                    extra={"cluster": settings.name})  # fmt: skip
        cached = None
    same = cached if cached is not None and cached.secret == view else None
    if same is not None and 0 <= now - same.fetched_at < timing.secret_refresh_interval:
        return same
    fresh = CachedCluster(secret=view, ips=addresses(view, same), fetched_at=now)
    if same is None:
        log.info("Region-less cluster: endpoint %s, CA sha256 %s from the configuration", view.endpoint,
                 view.ca_sha256, extra={"cluster": settings.name})  # fmt: skip
    store.save_cache(fresh)
    return fresh


def link_for(settings: ClusterSettings, store: ClusterStore, link: LinkMonitor) -> LinkMonitor:
    """The link a cluster's loop consults, when the loop starts: :class:`NoLink` for a Region-less cluster.

    For a Region cluster, ``link``; and a ``cluster.json`` written from a Region-less configuration is
    removed, so that the Region's secret is trusted only once EKS confirms it (the configuration that
    vouched for the old view no longer does). The installed kubeconfig stays.
    """
    if settings.regionless:
        return NoLink()
    try:
        cached = store.load_cache()
    except StoreError:
        return link  # the loop deals with a corrupt cache (it fetches the secret again)
    if cached is not None and isinstance(cached.secret, ConfiguredCluster):
        log.warning("the cluster is no longer Region-less: its configured endpoint and CA are forgotten; the "
                    "Region's secret is used once EKS confirms it", extra={"cluster": settings.name})  # fmt: skip
        store.path(CACHE).unlink(missing_ok=True)
    return link
