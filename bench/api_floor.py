"""The API floor of one renewal: the least a client must do to get a new certificate through the CSR API.

ECDSA P-256 key and CSR, one TLS connection with the current client certificate, POST the
CertificateSigningRequest, PUT the approval, GET it until the certificate is there (no pause between looks),
close. No verification, no install, no clean-up: what the agent does beyond this is its own cost. Plain
``http.client`` + ``ssl`` + ``cryptography``, sharing no code with the agent.

``warm`` (the floor the acceptance uses): the best client already holds a TLS context for its certificate
and a session ticket from talking to the server with it, as the agent does from verifying that certificate
in its previous step; both are made when the certificate is given (:meth:`ApiFloor.use`), not timed, and
the renewal's connection resumes the session. Not ``warm``: every renewal starts from nothing (a new
context, a full handshake), the floor of the first benchmarks.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import ssl
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

CSR_PATH = "/apis/certificates.k8s.io/v1/certificatesigningrequests"


class FloorFailed(RuntimeError):
    """The floor's renewal did not end with a certificate."""


class ApiFloor:
    """Timed floor renewals as the identity of ``cert_pem``/``key_pem`` (the agent's current kubeconfig)."""

    def __init__(self, server: str, ca_pem: bytes, tls_server_name: str | None, cert_pem: bytes, key_pem: bytes,
                 subject: tuple[str, str], *, warm: bool = True) -> None:  # fmt: skip
        url = urlsplit(server)
        self.host, self.port = url.hostname or "", url.port or 443
        self.server_name = tls_server_name or self.host
        self.ca_pem, self.subject, self.warm = ca_pem, subject, warm
        self._files = tempfile.TemporaryDirectory(prefix="api-floor-")
        self.cert_file, self.key_file = Path(self._files.name) / "c.crt", Path(self._files.name) / "c.key"
        self.key_file.touch(mode=0o600)
        self._context: ssl.SSLContext | None = None
        self._session: ssl.SSLSession | None = None
        self.names: list[str] = []
        self.use(cert_pem, key_pem)

    def use(self, cert_pem: bytes, key_pem: bytes) -> None:
        """Renew with this certificate from now on (the agent's current one: short lab certificates expire).
        ``warm``: its TLS context and a session ticket are made now (one request on a connection of their own)."""
        self.cert_file.write_bytes(cert_pem)
        self.key_file.write_bytes(key_pem)
        self._context, self._session = None, None
        if self.warm:
            self._context = self._new_context()
            connection = self._connect()
            try:
                _call(connection, "GET", "/version")  # a TLS 1.3 ticket comes with the first answer
                self._keep_session(connection)
            finally:
                connection.close()

    def close(self) -> None:
        self._files.cleanup()

    def _new_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cadata=self.ca_pem.decode("ascii"))
        context.load_cert_chain(self.cert_file, self.key_file)
        return context

    def _connect(self) -> http.client.HTTPSConnection:
        context = self._context or self._new_context()
        raw = socket.create_connection((self.host, self.port), timeout=30)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection = http.client.HTTPSConnection(self.host, self.port, timeout=30, context=context)  # no default CAs
        connection.sock = context.wrap_socket(raw, server_hostname=self.server_name, session=self._session)
        return connection

    def _keep_session(self, connection: http.client.HTTPSConnection) -> None:
        """After an answer on ``connection``: its session ticket, for the next connection (``warm`` only)."""
        session = connection.sock.session if self.warm and isinstance(connection.sock, ssl.SSLSocket) else None
        if session is not None and session.has_ticket:
            self._session = session

    def renew(self, expiration_seconds: int = 600) -> float:
        """Seconds for one renewal, from no key and no connection (and, not ``warm``, no context) to the
        certificate."""
        name = f"api-floor-{time.time_ns()}"
        started = time.perf_counter()
        key = ec.generate_private_key(ec.SECP256R1())
        common_name, organization = self.subject
        csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name)])).sign(key, hashes.SHA256())
        connection = self._connect()
        try:
            created = _call(connection, "POST", CSR_PATH, {
                "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
                "metadata": {"name": name},
                "spec": {"request": base64.b64encode(csr.public_bytes(serialization.Encoding.PEM)).decode(),
                         "signerName": "kubernetes.io/kube-apiserver-client", "usages": ["client auth"],
                         "expirationSeconds": expiration_seconds}})  # fmt: skip
            self._keep_session(connection)
            created.setdefault("status", {}).setdefault("conditions", []).append(
                {"type": "Approved", "status": "True", "reason": "ApiFloor", "message": "api floor"})
            _call(connection, "PUT", f"{CSR_PATH}/{name}/approval", created)
            deadline = time.monotonic() + 30
            while not (_call(connection, "GET", f"{CSR_PATH}/{name}").get("status") or {}).get("certificate"):
                if time.monotonic() > deadline:
                    raise FloorFailed(f"no certificate for {name} within 30 s")
        finally:
            connection.close()
        elapsed = time.perf_counter() - started
        self.names.append(name)
        return elapsed

    def delete_csrs(self) -> None:
        """Remove the floor's CSRs (not timed), so the server holds what it holds in the agent's rounds."""
        connection = self._connect()
        try:
            for name in self.names:
                _call(connection, "DELETE", f"{CSR_PATH}/{name}")
        finally:
            connection.close()
        self.names.clear()


def _call(connection: http.client.HTTPSConnection, method: str, path: str,
          body: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    data = None if body is None else json.dumps(body).encode()
    connection.request(method, path, body=data, headers={"Content-Type": "application/json",
                                                         "Accept": "application/json"})  # fmt: skip
    response = connection.getresponse()
    payload = response.read()
    if response.status >= 300:
        raise FloorFailed(f"{method} {path}: HTTP {response.status}: {payload[:300]!r}")
    return dict(json.loads(payload))
