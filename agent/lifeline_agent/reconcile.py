"""One cluster's reconcile loop: bootstrap, verify, install, renew, fail over; one :meth:`step` at a time.

Each step reads what is on disk (the store), decides the one thing to do, does it, publishes a
:class:`ClusterHealth` and returns when it wants to run again. A new kubeconfig is installed only
after it was proven against the API server on its own.
"""

from __future__ import annotations

import contextlib
import logging
import random
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lifeline_agent import kube, regionless
from lifeline_agent.admission import admit, validity_problem
from lifeline_agent.cluster_view import ClusterView, NeedsLink
from lifeline_agent.config import AgentConfig
from lifeline_agent.contract import ClusterSecret
from lifeline_agent.csr_cleanup import CsrCleanup
from lifeline_agent.deadline import Wanted, backoff_delay, mismatch, renewal_deadline
from lifeline_agent.group_change import GroupChanged, changed_group, reissue_for_group
from lifeline_agent.hooks import InstallHook
from lifeline_agent.keys import (
    CSR_USAGES,
    CertificateError,
    IssuedCertificate,
    generate_key,
    key_pem,
    load_key,
    make_csr,
    parse_certificate,
    utc,
)
from lifeline_agent.kubeconfig import build_kubeconfig, load_kubeconfig
from lifeline_agent.link import LinkMonitor
from lifeline_agent.observability import ClusterHealth, ClusterState, Observer
from lifeline_agent.region import RegionError, eks_token
from lifeline_agent.resolver import endpoint_host_port, ip_of_server, server_url
from lifeline_agent.store import CachedCluster, ClusterStore, StoreError
from lifeline_agent.trust import UntrustedEndpoint
from lifeline_agent.verify import Revoked, verify_kubeconfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Installed:
    """The kubeconfig on disk, taken apart."""

    config: dict[str, Any]
    target: kube.Target
    credential: kube.Credential
    certificate: IssuedCertificate


class ClusterAgent:
    def __init__(self, config: AgentConfig, cluster: str, link: LinkMonitor, observer: Observer | None = None,
                 *, clock: Callable[[], float] = time.time, rng: random.Random | None = None) -> None:  # fmt: skip
        self.config, self.cluster, self.link, self.observer = config, cluster, link, observer
        self.settings = config.cluster(cluster)
        self.store = ClusterStore(config.cluster_dir(cluster), operators_group=config.operators_group)
        self.clock, self.rng = clock, rng or random.Random()
        self.state = ClusterState.PENDING
        self.failures = 0
        self.last_error: str | None = None
        self.last_verified: float | None = None
        self.last_renewal: float | None = None
        self.not_after: float | None = None
        self.next_renewal: float | None = None
        self._deadline_for: bytes | None = None
        self._last_logged: tuple[ClusterState, str] | None = None
        self._renewal_requested: str | None = None
        self.csrs = CsrCleanup(cluster)  # deleted in steps that install nothing: never in a renewal's way
        self.hook = InstallHook(self.settings, observer)
        self.store.remove_stale_sessions()
        self.link = regionless.link_for(self.settings, self.store, link)  # Region-less: never waits for the link
        self.view = ClusterView(config, cluster, self.store, self.link)

    # --- the step -----------------------------------------------------------------------------------

    def step(self) -> float:
        """Do what is due now; returns the seconds until the next step is due."""
        now = self.clock()
        try:
            cache = self.view.current(now)
            delay = self._reconcile(cache, now)
            self.failures, self.last_error, self._last_logged = 0, None, None
            self.state = ClusterState.READY
        except NeedsLink as exc:
            self._record_failure(ClusterState.NEEDS_LINK, str(exc), logging.ERROR)
            delay = self.config.probe_interval
        except Revoked as exc:
            self._record_failure(ClusterState.REVOKED, str(exc), logging.ERROR)
            delay = self.config.timing.backoff_cap
        except (UntrustedEndpoint, GroupChanged) as exc:
            state = ClusterState.UNTRUSTED if isinstance(exc, UntrustedEndpoint) else ClusterState.GROUP_CHANGED
            self._record_failure(state, str(exc), logging.ERROR)
            delay = backoff_delay(self.failures, self.config.timing.backoff_base, self.config.timing.backoff_cap,
                                  self.rng)  # fmt: skip
        except (kube.KubeError, RegionError, StoreError, ValueError, OSError) as exc:
            still_serving = self.not_after is not None and self.not_after > now and self.last_verified is not None
            state = ClusterState.RENEWING if still_serving else ClusterState.FAILED
            self._record_failure(state, f"{type(exc).__name__}: {exc}", logging.WARNING)
            delay = backoff_delay(self.failures, self.config.timing.backoff_base, self.config.timing.backoff_cap,
                                  self.rng)  # fmt: skip
        self.publish()
        return max(0.0, delay)

    def request_renewal(self, reason: str) -> None:
        """Renew at the next step whatever the deadline says (an operator's request, e.g. a key may have leaked)."""
        self._renewal_requested = reason

    def _record_failure(self, state: ClusterState, message: str, level: int) -> None:
        self.failures += 1
        self.state, self.last_error = state, message
        repeated = self._last_logged == (state, message)
        self._last_logged = (state, message)
        log.log(logging.DEBUG if repeated else level, "%s: %s", state.value, message,
                extra={"cluster": self.cluster, "state": state.value, "failures": self.failures})  # fmt: skip

    def health(self) -> ClusterHealth:
        return ClusterHealth(
            cluster=self.cluster, state=self.state, kubeconfig_path=str(self.store.kubeconfig_path),
            certificate_not_after=self.not_after, next_renewal=self.next_renewal,
            last_verified=self.last_verified, last_renewal=self.last_renewal, last_error=self.last_error,
        )  # fmt: skip

    def publish(self) -> None:
        health = self.health()
        if self.observer is not None:
            self.observer.publish(health)
        document = vars(health) | {"state": health.state.value,
                                   "link": {True: "connected", False: "disconnected", None: "unknown"}[self.link.last]}
        try:
            self.store.save_status(document)
        except OSError as exc:
            log.warning("cannot write status: %s", exc, extra={"cluster": self.cluster})

    def _reconcile(self, cache: CachedCluster, now: float) -> float:
        installed = self._installed()
        swaps = self.store.swaps
        if installed is not None:
            self.not_after = installed.certificate.not_after
        wanted = self._wanted(cache)
        if installed is None:
            self._issue(cache, None, "no kubeconfig yet")
        elif installed.certificate.expired(now):
            self._issue(cache, None, f"certificate expired at {utc(installed.certificate.not_after)}")
        elif reason := mismatch(installed.certificate, wanted):
            issued_by_cluster_ca = installed.certificate.signed_by(cache.secret.ca_pem)
            old_group = changed_group(installed.certificate, wanted, pinned=self.config.breakglass_group is not None)
            with reissue_for_group(old_group, wanted.organization):
                try:
                    self._issue(cache, installed if issued_by_cluster_ca else None, reason)
                except kube.Forbidden:  # the old group's binding moved to the new group: only bootstrap can issue
                    if old_group is None or not issued_by_cluster_ca:
                        raise
                    self._issue(cache, None, f"{reason}; the certificate for {old_group!r} may not request a new one")
        elif installed.target.ca_pem != cache.secret.ca_pem:
            self._issue(cache, installed, "the cluster CA changed in the secret")
        elif self._renewal_requested is not None:
            self._issue(cache, installed, self._renewal_requested)
        elif now >= self._deadline(installed.certificate):
            self._issue(cache, installed, f"renewal deadline {utc(self._deadline(installed.certificate))} reached")
        elif self._endpoint_moved(installed, cache):
            self._rewrite(installed, cache, "the cluster endpoint changed, or its addresses are known now")
        elif self.last_verified is None or now - self.last_verified >= self.config.timing.verify_interval:
            try:
                self._verify_installed(installed, cache)
            except kube.Unauthorized as exc:  # e.g. the cluster's CA was rotated before the secret said so
                self._issue(cache, None, f"the API server no longer accepts the certificate ({exc})")
        current = self._installed() if self.store.swaps != swaps else installed
        if current is None:
            raise StoreError("no kubeconfig is installed after this step")
        if current is installed:
            self.delete_csrs(current)
        self.not_after = current.certificate.not_after
        self.next_renewal = self._deadline(current.certificate)
        now = self.clock()
        delays = [self.next_renewal - now, (self.last_verified or now) + self.config.timing.verify_interval - now]
        if self.link.last:
            delays.append(self.view.seconds_to_refresh())
        self.view.settle(cache)
        return min(delays)

    def delete_csrs(self, installed: Installed | None = None) -> None:
        """Delete the CSRs of earlier issues as the installed credential (``installed``, else read); best effort."""
        with contextlib.suppress(StoreError, ValueError, KeyError, OSError):
            installed = installed or _taken_apart(self.store.current())
        if installed is not None:
            self.csrs.delete_pending(installed.target, installed.credential, self.config.timing.api_timeout)

    # --- reading what is installed --------------------------------------------------------------------

    def _installed(self) -> Installed | None:
        """The installed kubeconfig; when it is unusable or expired, the previous generation if that is valid."""
        now, current, problem = self.clock(), None, None
        try:
            current = _taken_apart(self.store.current())
            if current is None or not current.certificate.expired(now):
                return current
            problem = f"its certificate expired at {utc(current.certificate.not_after)}"
        except (StoreError, ValueError, KeyError, OSError) as exc:
            problem = str(exc)
        try:
            previous = _taken_apart(self.store.previous())
        except (StoreError, ValueError, KeyError, OSError):
            previous = None
        skew = self.config.timing.clock_skew
        if previous is not None and previous.credential.key_pem is not None \
                and validity_problem(previous.certificate, now=now, clock_skew=skew) is None:  # fmt: skip
            self.store.restore_previous(previous.credential.key_pem)
            log.warning("installed kubeconfig unusable (%s); restored kubeconfig.prev", problem,
                        extra={"cluster": self.cluster})  # fmt: skip
            return previous
        if current is None:
            log.warning("installed kubeconfig unusable, issuing a new one: %s", problem,
                        extra={"cluster": self.cluster})  # fmt: skip
        return current

    def _deadline(self, certificate: IssuedCertificate) -> float:
        key = certificate.fingerprint  # not (notBefore, notAfter): two certificates can share those seconds
        if self._deadline_for != key:
            self._deadline_for = key
            self._deadline_value = renewal_deadline(certificate.not_before, certificate.not_after, self.rng,
                                                    received_at=self.store.installed_at())  # fmt: skip
        return self._deadline_value

    def _endpoint_moved(self, installed: Installed, cache: CachedCluster) -> bool:
        host, port = endpoint_host_port(cache.secret.endpoint)
        server_host, server_port = endpoint_host_port(installed.target.server)
        name = installed.target.tls_server_name or server_host
        by_name_only = ip_of_server(installed.target.server) is None and bool(cache.ips)
        return name != host or server_port != port or by_name_only

    # --- servers to try, in order ---------------------------------------------------------------------

    def _targets(self, cache: CachedCluster, prefer: str | None = None) -> list[kube.Target]:
        host, port = endpoint_host_port(cache.secret.endpoint)
        ips = list(cache.ips)
        if prefer in ips:
            ips.remove(prefer)
            ips.insert(0, prefer)
        targets = [kube.Target(server_url(ip, port), cache.secret.ca_pem, host) for ip in ips]
        return targets or [kube.Target(cache.secret.endpoint, cache.secret.ca_pem, None)]

    def _session(self, target: kube.Target, credential: kube.Credential) -> kube.KubeSession:
        return kube.KubeSession(target, credential, timeout=self.config.timing.api_timeout)

    def _first_reachable(self, targets: list[kube.Target], attempt: Callable[[kube.Target], Any]) -> Any:
        """``attempt`` on each target in turn until one answers; the last :class:`kube.Unreachable` otherwise."""
        error = kube.Unreachable("no control plane address to try")
        for target in targets:
            try:
                return attempt(target)
            except kube.Unreachable as exc:
                log.warning("control plane address unreachable: %s", exc, extra={"cluster": self.cluster})
                error = exc
        raise error

    # --- issuing ----------------------------------------------------------------------------------------

    def _issue(self, cache: CachedCluster, installed: Installed | None, reason: str) -> None:
        """A new key and certificate: with the current certificate when given (no Region needed), else bootstrap."""
        log.info("issuing a new certificate: %s", reason, extra={"cluster": self.cluster})
        self.state = ClusterState.RENEWING
        if self.observer is not None:  # status.json says what the last step ended with, until this one ends
            self.observer.publish(self.health())
        try:
            if installed is not None:
                try:
                    self._issue_with(cache, installed.credential, ip_of_server(installed.target.server))
                    return
                except kube.Unauthorized as exc:
                    log.warning("the current certificate is not accepted (%s); bootstrapping", exc,
                                extra={"cluster": self.cluster})  # fmt: skip
            if not self.link.is_up(since=self.view.asked):
                raise NeedsLink(f"{reason}; a new certificate needs the service link to the Region, which is down")
            self._issue_with(cache, self._bootstrap_credential(cache.secret), None)
        except NeedsLink:
            raise
        except Exception:
            self._count_renewal("failure")
            raise

    def _count_renewal(self, result: str) -> None:
        if self.observer is not None:
            self.observer.renewal(self.cluster, result)

    def _bootstrap_credential(self, secret: ClusterSecret) -> kube.Credential:
        if self.settings.bootstrap_kubeconfig is not None:
            path = self.settings.bootstrap_kubeconfig
            try:
                _, credential = kube.from_kubeconfig(load_kubeconfig(path.read_bytes()), path.parent)
            except (OSError, ValueError, KeyError) as exc:
                raise CertificateError(f"bootstrap kubeconfig {path}: {exc}") from None
            return credential
        return kube.Credential(token=eks_token(secret.token_cluster_id, region=self.config.region,
                                               endpoint_url=self.config.aws_endpoint_url,
                                               timeout=self.config.timing.api_timeout))  # fmt: skip

    def _issue_with(self, cache: CachedCluster, credential: kube.Credential, prefer_ip: str | None) -> None:
        key = generate_key(self.config.key_type)
        wanted = self._wanted(cache)
        csr = make_csr(key, wanted.common_name, wanted.organization)
        target, cert_pem = self._first_reachable(self._targets(cache, prefer_ip), lambda target: (
            target, self._csr_round_trip(target, credential, csr)))  # fmt: skip
        certificate = parse_certificate(cert_pem)
        admit(certificate, key, wanted, now=self.clock(), clock_skew=self.config.timing.clock_skew,
              min_remaining=self.config.timing.min_remaining_lifetime)  # fmt: skip
        new_key = key_pem(key)
        config = self._kubeconfig(target, cert_pem, new_key)
        self._verify(config, wanted.organization)
        self.store.install(config, new_key)
        self.last_renewal, self._renewal_requested = self.clock(), None
        self._count_renewal("success")
        self.hook.installed(self.store.kubeconfig_path, certificate.not_after)
        log.info("installed a new kubeconfig", extra={
            "cluster": self.cluster, "server": target.server, "not_after": utc(certificate.not_after),
            "path": str(self.store.kubeconfig_path)})  # fmt: skip

    def _csr_round_trip(self, target: kube.Target, credential: kube.Credential, csr: bytes) -> bytes:
        stem = re.sub(r"[^a-z0-9-]+", "-", f"{self.config.host_id[:20]}-{self.cluster[:30]}".lower())
        name = f"lifeline-{stem}-{secrets.token_hex(4)}"  # a valid object name, unique per attempt
        with self._session(target, credential) as session:
            created = session.create_csr(name, csr, CSR_USAGES, self.config.certificate_lifetime)
            self.csrs.later(name)
            session.approve_csr(name, f"lifeline agent on host {self.config.host_id}", created)
            return session.wait_for_certificate(name, self.config.timing.csr_timeout)

    def _kubeconfig(self, target: kube.Target, cert_pem: bytes, key: bytes) -> dict[str, Any]:
        return build_kubeconfig(cluster_name=self.cluster, server=target.server, ca_pem=target.ca_pem,
                                user_name=self.config.user_name, client_cert_pem=cert_pem, client_key_pem=key,
                                tls_server_name=target.tls_server_name)  # fmt: skip

    # --- verifying ---------------------------------------------------------------------------------------

    def _wanted(self, cache: CachedCluster) -> Wanted:
        group = self.config.group_for(cache.secret.breakglass_group)
        return Wanted(self.config.user_name, group, self.config.key_type, cache.secret.ca_pem)

    def _verify(self, config: dict[str, Any], group: str) -> None:
        """Prove ``config`` on its own: the server sees our user and group, and lets us read a service."""
        verify_kubeconfig(config, self.config.user_name, group, timeout=self.config.timing.api_timeout)
        self.last_verified = self.clock()

    def _verify_installed(self, installed: Installed, cache: CachedCluster) -> None:
        try:
            self._verify(installed.config, self._wanted(cache).organization)
        except kube.Unreachable:
            current_ip = ip_of_server(installed.target.server)
            others = [t for t in self._targets(cache) if ip_of_server(t.server) != current_ip]
            if not others:
                raise
            self._rewrite(installed, cache, f"control plane address {current_ip} stopped answering", others)

    def _rewrite(self, installed: Installed, cache: CachedCluster, reason: str,
                 targets: list[kube.Target] | None = None) -> None:  # fmt: skip
        """Same certificate and key, another server (failover or a new endpoint); verified before install.

        No minimum lifetime here: the certificate is already in use, and refusing it would leave only the
        address that stopped answering.
        """
        cert_pem, key = installed.credential.cert_pem, installed.credential.key_pem
        if cert_pem is None or key is None:
            raise CertificateError("the installed kubeconfig has no client certificate and key")
        admit(installed.certificate, load_key(key), self._wanted(cache), now=self.clock(),
              clock_skew=self.config.timing.clock_skew, min_remaining=0.0)  # fmt: skip

        def try_target(target: kube.Target) -> dict[str, Any]:
            config = self._kubeconfig(target, cert_pem, key)
            self._verify(config, self._wanted(cache).organization)
            return config

        config = self._first_reachable(targets or self._targets(cache), try_target)
        self.store.install(config, key)
        self.hook.installed(self.store.kubeconfig_path, installed.certificate.not_after, "new-server")
        log.warning("kubeconfig rewritten: %s", reason, extra={"cluster": self.cluster,
                    "server": config["clusters"][0]["cluster"]["server"]})  # fmt: skip


def _taken_apart(config: dict[str, Any] | None) -> Installed | None:
    if config is None:
        return None
    target, credential = kube.from_kubeconfig(config)
    if credential.cert_pem is None:
        raise CertificateError("the installed kubeconfig has no client certificate")
    return Installed(config=config, target=target, credential=credential,
                     certificate=parse_certificate(credential.cert_pem))  # fmt: skip
