"""Talking to a Kubernetes API server with one kubeconfig's credentials, over :mod:`lifeline_agent.transport`.

Only the calls the agent needs, on any conformant API server: CSR create / approve / wait / delete,
``SelfSubjectReview`` (else ``SelfSubjectAccessReview``) and a read of the ``kubernetes`` service.
Every call has a whole-request deadline (the session's ``timeout``) and a cap on the answer's size.
The client certificate and key go to a private temporary directory (0700, files 0600) inside the
cluster's state directory for as long as the session lives: ``ssl`` loads them from files.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from lifeline_agent import transport
from lifeline_agent.tls_contexts import client_context

CLIENT_SIGNER = "kubernetes.io/kube-apiserver-client"
CSR_PATH = "/apis/certificates.k8s.io/v1/certificatesigningrequests"
EAGER_LOOKS = 8  # looks at a CSR without a pause: the GETs a signer that is busy takes on loopback (~10 ms)


class KubeError(Exception):
    """A call to the API server failed; subclasses say how."""


class Unreachable(KubeError):
    """The API server did not answer (refused, reset, timed out)."""


class Timeout(Unreachable):
    """The API server did not give a complete answer within the request's deadline (e.g. it drips bytes)."""


class BodyTooLarge(KubeError):
    """The API server's answer is larger than any answer the agent asks for can be."""


class TlsError(KubeError):
    """TLS failed: the server's certificate is not trusted by the CA we have, or the handshake broke."""


class Unauthorized(KubeError):
    """401: the server does not accept the credential (expired, unknown CA, bad token)."""


class Forbidden(KubeError):
    """403: authenticated, but RBAC does not allow it (e.g. the break-glass binding was deleted)."""


class ServerError(KubeError):
    """5xx: the API server failed; worth retrying later."""


class TooManyRequests(ServerError):
    """429: the API server sheds load (API priority and fairness); worth retrying later, like a 5xx."""


class NotFound(KubeError):
    """404: the resource (or the API) is not served."""


class Conflict(KubeError):
    """409: the object changed since it was read (or already exists)."""


class CsrRejected(KubeError):
    """The CSR ended ``Denied`` or ``Failed``, or the server refused to create it."""


class CsrTimeout(KubeError):
    """No certificate was issued within the bound."""


@dataclass(frozen=True)
class Target:
    """Where the API server is and how to trust it."""

    server: str
    ca_pem: bytes
    tls_server_name: str | None = None


@dataclass(frozen=True)
class Credential:
    """A client certificate and key, or a bearer token. Never printed (``repr`` hides it)."""

    cert_pem: bytes | None = field(default=None, repr=False)
    key_pem: bytes | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if (self.cert_pem is None) != (self.key_pem is None) or (self.cert_pem is None) == (self.token is None):
            raise ValueError("a credential is a client certificate with its key, or a token")


@dataclass(frozen=True)
class Identity:
    user: str
    groups: tuple[str, ...]


def from_kubeconfig(config: dict[str, Any], base_dir: Path | None = None) -> tuple[Target, Credential]:
    """The target and credential of the current context of a parsed kubeconfig (embedded data or files)."""

    def named(kind: str, name: str) -> dict[str, Any]:
        for entry in config.get(kind) or []:
            if isinstance(entry, dict) and entry.get("name") == name:
                return dict(entry.get(kind[:-1]) or {})
        raise ValueError(f"kubeconfig: no {kind[:-1]} named {name!r}")

    def data(section: dict[str, Any], key: str) -> bytes | None:
        if section.get(f"{key}-data"):
            return base64.b64decode(section[f"{key}-data"])
        if section.get(key):
            path = Path(section[key])
            return (path if path.is_absolute() or base_dir is None else base_dir / path).read_bytes()
        return None

    context_name = config.get("current-context") or config["contexts"][0]["name"]
    context = named("contexts", context_name)
    cluster = named("clusters", context["cluster"])
    user = named("users", context["user"])
    ca = data(cluster, "certificate-authority")
    if ca is None or not cluster.get("server"):
        raise ValueError("kubeconfig: the cluster needs a server and a certificate authority")
    if user.get("exec") or user.get("auth-provider"):
        raise ValueError("kubeconfig: exec and auth-provider credentials are not supported here; "
                         "use a token, a token file or a client certificate")
    token = user.get("token")
    if not token and user.get("tokenFile"):
        token = Path(user["tokenFile"]).read_text().strip()
    target = Target(server=cluster["server"], ca_pem=ca, tls_server_name=cluster.get("tls-server-name"))
    if token:
        return target, Credential(token=token)
    return target, Credential(cert_pem=data(user, "client-certificate"), key_pem=data(user, "client-key"))


def _status_message(body: bytes) -> str:
    try:
        status = json.loads(body)
        return str(status.get("message") or status.get("reason") or body[:200])
    except (ValueError, AttributeError):
        return body[:200].decode("utf-8", "replace")


_TRANSPORT_ERRORS: dict[type[transport.TransportError], type[KubeError]] = {
    transport.DeadlineExceeded: Timeout,
    transport.BodyTooLarge: BodyTooLarge,
    transport.TlsFailed: TlsError,
    transport.ConnectionFailed: Unreachable,
    transport.BadResponse: Unreachable,
}


class KubeSession:
    """One API server, one credential, one kept-alive connection. Use as a context manager; nothing is retried."""

    def __init__(self, target: Target, credential: Credential, *, timeout: float = 10.0) -> None:
        self.target, self.credential, self.timeout = target, credential, timeout
        url = urlsplit(target.server)
        self._netloc, self._base, port = url.netloc, url.path.rstrip("/"), url.port or 443
        self._headers = {"Accept": "application/json", "Content-Type": "application/json"}
        client_cert: tuple[bytes, bytes] | None = None
        if credential.token is not None:
            self._headers["Authorization"] = f"Bearer {credential.token}"
        elif credential.cert_pem is not None and credential.key_pem is not None:
            client_cert = (credential.cert_pem, credential.key_pem)
        self._url_problem = None if url.scheme == "https" and url.hostname else f"{target.server!r} is not https://host"
        self._connection = transport.HttpsConnection(
            url.hostname or "", port, server_name=target.tls_server_name or url.hostname or "",
            context=lambda: client_context(target.ca_pem, client_cert),
        )  # fmt: skip

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> KubeSession:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """JSON in, JSON out; HTTP and transport errors become :class:`KubeError` subclasses."""
        self._send(method, path, body)
        return self._answer(method, path)

    def _send(self, method: str, path: str, body: dict[str, Any] | None) -> None:
        where = f"{method} {self._netloc}{path}"
        if self._url_problem is not None:
            raise KubeError(f"{where}: {self._url_problem}")
        data = None if body is None else json.dumps(body).encode()
        try:
            self._connection.send(method, self._base + path, self._headers, data, self.timeout)
        except transport.TransportError as exc:
            raise _TRANSPORT_ERRORS[type(exc)](f"{where}: {exc}") from None

    def _answer(self, method: str, path: str) -> dict[str, Any]:
        where = f"{method} {self._netloc}{path}"
        try:
            status, payload = self._connection.receive()
        except transport.TransportError as exc:
            raise _TRANSPORT_ERRORS[type(exc)](f"{where}: {exc}") from None
        if status == 401:
            raise Unauthorized(f"{where}: 401 Unauthorized: {_status_message(payload)}")
        if status == 403:
            raise Forbidden(f"{where}: 403 Forbidden: {_status_message(payload)}")
        if status == 404:
            raise NotFound(f"{where}: 404 Not Found: {_status_message(payload)}")
        if status == 409:
            raise Conflict(f"{where}: 409 Conflict: {_status_message(payload)}")
        if status == 429:
            raise TooManyRequests(f"{where}: 429 Too Many Requests: {_status_message(payload)}")
        if status >= 500:
            raise ServerError(f"{where}: HTTP {status}: {_status_message(payload)}")
        if status >= 400:
            raise KubeError(f"{where}: HTTP {status}: {_status_message(payload)}")
        try:
            result = json.loads(payload)
        except ValueError:
            raise KubeError(f"{where}: the answer is not JSON") from None
        if not isinstance(result, dict):
            raise KubeError(f"{where}: the answer is not a JSON object")
        return result

    # --- identity -----------------------------------------------------------------------------------

    def who_am_i(self) -> Identity | None:
        """The user and groups the server sees (``SelfSubjectReview``); ``None`` when it is not served."""
        for version in ("v1", "v1beta1"):
            body = {"apiVersion": f"authentication.k8s.io/{version}", "kind": "SelfSubjectReview"}
            try:
                review = self.request("POST", f"/apis/authentication.k8s.io/{version}/selfsubjectreviews", body)
            except NotFound:
                continue
            info = (review.get("status") or {}).get("userInfo") or {}
            return Identity(user=str(info.get("username", "")), groups=tuple(info.get("groups") or ()))
        return None

    def can(self, verb: str, resource: str, namespace: str = "", name: str = "") -> bool:
        """``SelfSubjectAccessReview``: may this credential do ``verb`` on ``resource``?"""
        attributes = {"verb": verb, "resource": resource, "namespace": namespace, "name": name}
        body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                "spec": {"resourceAttributes": {k: v for k, v in attributes.items() if v}}}  # fmt: skip
        review = self.request("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", body)
        return bool((review.get("status") or {}).get("allowed"))

    def read_kubernetes_service(self) -> dict[str, Any]:
        """The ``kubernetes`` service, from the API server's cache (``resourceVersion=0``): the read is allowed or
        not all the same, without a round trip to etcd."""
        return self.request("GET", "/api/v1/namespaces/default/services/kubernetes?resourceVersion=0")

    # --- certificate signing requests ---------------------------------------------------------------

    def create_csr(self, name: str, csr_pem: bytes, usages: tuple[str, ...], expiration_seconds: int) -> dict[str, Any]:
        """POST the CSR; returns the object as the server stored it (what :meth:`approve_csr` starts from)."""
        body = {
            "apiVersion": "certificates.k8s.io/v1",
            "kind": "CertificateSigningRequest",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "lifeline"}},
            "spec": {
                "request": base64.b64encode(csr_pem).decode("ascii"),
                "signerName": CLIENT_SIGNER,
                "usages": list(usages),
                "expirationSeconds": expiration_seconds,
            },
        }
        try:
            return self.request("POST", CSR_PATH, body)
        except (Forbidden, Unauthorized, Unreachable, TlsError, ServerError):
            raise
        except KubeError as exc:
            raise CsrRejected(f"CSR {name} not accepted: {exc}") from None

    def approve_csr(self, name: str, message: str, created: dict[str, Any] | None = None) -> None:
        """Add the Approved condition through the approval subresource, starting from ``created`` (the POST's
        answer) when given, else from a GET; a conflict (the object changed meanwhile) reads it again once."""
        csr = created if created is not None and (created.get("metadata") or {}).get("name") == name else None
        for attempt in range(2):
            if csr is None:
                csr = self.request("GET", f"{CSR_PATH}/{name}")
            status = csr.setdefault("status", {})
            conditions = status.setdefault("conditions", [])
            if any(c.get("type") == "Approved" for c in conditions):
                return
            conditions.append({"type": "Approved", "status": "True", "reason": "LifelineAgentApproved",
                               "message": message})  # fmt: skip
            try:
                self.request("PUT", f"{CSR_PATH}/{name}/approval", csr)
                return
            except Conflict:
                if attempt:
                    raise
                csr = None

    def wait_for_certificate(self, name: str, timeout: float, sleep: Callable[[float], None] = time.sleep) -> bytes:
        """Poll the CSR until ``status.certificate`` is set; :class:`CsrRejected` on Denied/Failed.

        The first :data:`EAGER_LOOKS` looks follow each other at once; then the pause is half the time waited so
        far, at least 1 ms and at most 1 s. kube-controller-manager's signer answers an approved CSR in about 5 ms
        on loopback (bench/lab_speed.py), two to four GETs, in 10 ms and more on a busy machine: the first looks
        see the certificate as soon as it is there, and a slow signer is asked about once a second.
        """
        started = time.monotonic()
        deadline = started + timeout
        looks = 0
        while True:
            looks += 1
            csr = self.request("GET", f"{CSR_PATH}/{name}")
            status = csr.get("status") or {}
            for condition in status.get("conditions") or []:
                if condition.get("type") in ("Denied", "Failed") and condition.get("status", "True") == "True":
                    reason = condition.get("message") or condition.get("reason") or ""
                    raise CsrRejected(f"CSR {name} {condition['type']}: {reason}")
            if status.get("certificate"):
                return base64.b64decode(status["certificate"])
            now = time.monotonic()
            if now >= deadline:
                raise CsrTimeout(f"CSR {name}: no certificate after {timeout:g} s")
            if looks >= EAGER_LOOKS:
                sleep(min(max((now - started) / 2, 0.001), 1.0, deadline - now))
