"""The secret is a hint, EKS is the authority: the secret's endpoint and CA are used only when EKS agrees.

Whoever can write ``lifeline/<cluster>`` could otherwise point the agent at their own server and
collect its IAM token, CSR and client certificate. :class:`TrustGate` stands between the fetched
secret and ``cluster.json`` (the trusted view every API call is aimed at):

- a secret with the trusted endpoint and CA is taken as it is (other fields may change);
- any other endpoint or CA (and the first secret of all) is compared with ``eks:DescribeCluster``. A
  confirmed one is used by this step and written to ``cluster.json`` only when the step succeeded with
  it (the new endpoint answered and the kubeconfig was verified); an unconfirmed one is not used at
  all: the step works on with the trusted view and then ends :class:`UntrustedEndpoint`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from urllib.parse import urlsplit

from cryptography import x509

from lifeline_agent.contract import ClusterSecret, ContractError, ca_sha256, decode_ca
from lifeline_agent.region import EksCluster, RegionError
from lifeline_agent.store import CachedCluster, ClusterStore

log = logging.getLogger(__name__)


class UntrustedEndpoint(Exception):
    """The secret's endpoint or CA is not what EKS reports for the cluster; the message says what differs."""


def endpoint_identity(endpoint: str) -> tuple[str, str, int]:
    """``(scheme, host, port)`` of an endpoint URL: what two spellings of one endpoint share."""
    parts = urlsplit(endpoint)
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port or 443


def same_origin(trusted: ClusterSecret, fresh: ClusterSecret) -> bool:
    """True when ``fresh`` names the endpoint and CA of ``trusted`` (its other fields may differ)."""
    return endpoint_identity(trusted.endpoint) == endpoint_identity(fresh.endpoint) \
        and trusted.ca_sha256 == fresh.ca_sha256  # fmt: skip


def _certificate_der(pem: bytes) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding

    return x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)


def differences(secret: ClusterSecret, eks: EksCluster) -> list[str]:
    """What the secret says that EKS does not report; empty when EKS confirms the endpoint and the CA."""
    found: list[str] = []
    if eks.endpoint is None:
        found.append(f"EKS reports no endpoint (cluster status {eks.status or 'unknown'})")
    elif endpoint_identity(secret.endpoint) != endpoint_identity(eks.endpoint):
        found.append(f"endpoint {secret.endpoint} is not EKS's {eks.endpoint}")
    if eks.certificate_authority_data is None:
        found.append(f"EKS reports no CA (cluster status {eks.status or 'unknown'})")
        return found
    try:
        reported = decode_ca(eks.certificate_authority_data)
    except ContractError as exc:
        found.append(f"EKS reports a CA that is not usable ({exc})")
        return found
    if _certificate_der(secret.ca_pem) != _certificate_der(reported):
        found.append(f"CA sha256 {secret.ca_sha256} is not EKS's {ca_sha256(eks.certificate_authority_data)}")
    return found


def _view(prefix: str, secret: ClusterSecret | None) -> dict[str, str | None]:
    return {f"{prefix}_endpoint": secret.endpoint if secret else None,
            f"{prefix}_ca_sha256": secret.ca_sha256 if secret else None}  # fmt: skip


class TrustGate:
    """One cluster's gate: decides which view a step uses and when ``cluster.json`` changes (only here)."""

    def __init__(self, store: ClusterStore, describe: Callable[[], EksCluster]) -> None:
        self._store, self._describe = store, describe
        self._pending: CachedCluster | None = None
        self._distrust: str | None = None

    def accept(self, trusted: CachedCluster | None, fresh: CachedCluster) -> CachedCluster:
        """The view for this step: ``fresh`` when its endpoint and CA are trusted or EKS confirms them, else
        ``trusted``. With nothing trusted yet, :class:`UntrustedEndpoint` (EKS reports otherwise) or
        :class:`RegionError` (EKS cannot be asked): nothing may be sent anywhere then."""
        self._pending = None
        secret = fresh.secret
        if trusted is not None and same_origin(trusted.secret, secret):
            self._distrust = None
            if trusted.secret != secret or trusted.ips != fresh.ips:
                self._store.save_cache(fresh)
            return fresh
        try:
            problems = differences(secret, self._describe())
        except RegionError as exc:
            if trusted is None:
                raise RegionError(f"cannot confirm the endpoint and CA of secret {secret.secret_name} with EKS "
                                  f"({exc}); nothing was sent to {secret.endpoint}") from None  # fmt: skip
            problems = [f"EKS could not be asked ({exc}); the agent principal needs eks:DescribeCluster"]
        extra = {"cluster": secret.cluster_name, **_view("old", trusted.secret if trusted else None),
                 **_view("new", secret)}  # fmt: skip
        if not problems:
            self._distrust, self._pending = None, fresh
            if trusted is not None:
                log.warning("cluster %s changed in the secret and EKS DescribeCluster confirms it: following "
                            "(endpoint %s -> %s, CA sha256 %s -> %s)", _what_changed(trusted.secret, secret),
                            trusted.secret.endpoint, secret.endpoint, trusted.secret.ca_sha256, secret.ca_sha256,
                            extra=extra)  # fmt: skip
            return fresh
        message = _untrusted_message(trusted.secret if trusted else None, secret, problems)
        log.warning(message, extra=extra)
        if trusted is None:
            raise UntrustedEndpoint(message)
        self._distrust = message
        return trusted

    def settle(self, used: CachedCluster) -> None:
        """After a step that succeeded with ``used``: a confirmed change becomes the trusted view; a refused
        one ends the step :class:`UntrustedEndpoint`, although its work against the trusted view is done."""
        if self._pending is not None and self._pending is used:
            self._store.save_cache(used)
            self._pending = None
        if self._distrust is not None:
            raise UntrustedEndpoint(self._distrust)


def _what_changed(old: ClusterSecret, new: ClusterSecret) -> str:
    endpoint = endpoint_identity(old.endpoint) != endpoint_identity(new.endpoint)
    ca = old.ca_sha256 != new.ca_sha256
    return "CA and endpoint" if endpoint and ca else "endpoint" if endpoint else "CA"


def _untrusted_message(trusted: ClusterSecret | None, secret: ClusterSecret, problems: list[str]) -> str:
    name = secret.secret_name
    if trusted is None:
        kept = f"nothing was sent to {secret.endpoint} and no kubeconfig is made until the secret matches EKS"
    else:
        kept = (f"not followed: the kubeconfig and cluster.json stay on {trusted.endpoint} "
                f"(CA sha256 {trusted.ca_sha256})")  # fmt: skip
    return (f"secret {name} is not confirmed by EKS DescribeCluster: {'; '.join(problems)}; {kept}. Check who "
            f"wrote the secret (CloudTrail PutSecretValue on {name}) and let the Lifeline workflow write it again")
