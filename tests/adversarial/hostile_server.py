"""A hostile Kubernetes API server for tests: real HTTPS on 127.0.0.1, answers chosen by ``mode``.

It speaks just enough of the API for the agent (SelfSubjectReview, SelfSubjectAccessReview, the
``kubernetes`` service, CSR create / get / approve / delete with immediate issuance by its own CA)
and records every request it receives, so a test can prove which credentials reached it.

Modes (``server.mode`` may be changed while it runs):

- ``honest``: what a conformant API server does.
- ``expired`` / ``not-yet-valid``: issued certificates whose validity window is past / in the future.
- ``ca-true``: issued certificates carry ``BasicConstraints CA:TRUE``.
- ``short-20s``: issued certificates live 20 s.
- ``wrong-key``: issued certificates are for a key the server made, not the CSR's.
- ``extra-group``: issued certificates carry an extra ``O`` (:data:`EXTRA_GROUP`).
- ``garbage``: ``status.certificate`` is not a certificate.
- ``slow-drip``: every answer is sent one byte per second (bounded by ``drip_limit`` seconds).
- ``huge-body``: every answer is a 300 MB JSON body, generated while it is sent, never held in memory
  (with a Content-Length, or with ``huge_body_length=False`` none: it ends when the connection closes).
- ``unauthorized``: 401 on everything (requests are still recorded).
- ``throttled``: 429 on everything, as API priority and fairness answers when it sheds load.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import http.server
import json
import shutil
import socket
import socketserver
import ssl
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from lab.pki import ClusterCA, parse_csr

MODES = ("honest", "expired", "not-yet-valid", "ca-true", "short-20s", "wrong-key", "extra-group", "garbage",
         "slow-drip", "huge-body", "unauthorized", "throttled")  # fmt: skip
EXTRA_GROUP = "system:masters"
HUGE_BODY_BYTES = 300 * 1024 * 1024
DNS_NAME = "hostile.lifeline.test"
TOKEN_USER = "arn:aws:sts::111122223333:assumed-role/lifeline-agent/host"
TOKEN_GROUPS = ("lifeline:agents",)
CSR_PATH = "/apis/certificates.k8s.io/v1/certificatesigningrequests"
BACKDATE = dt.timedelta(minutes=5)
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    client_cert_pem: bytes | None
    mode: str

    @property
    def bearer_token(self) -> str | None:
        value = self.headers.get("authorization", "")
        return value[7:] if value.lower().startswith("bearer ") else None

    @property
    def csr_pem(self) -> bytes | None:
        if self.method != "POST" or self.path.split("?")[0] != CSR_PATH:
            return None
        try:
            return base64.b64decode(json.loads(self.body)["spec"]["request"])
        except (ValueError, KeyError, TypeError):
            return None


@dataclass(frozen=True)
class SeenCredential:
    """A credential the server received: ``kind`` is ``token``, ``csr`` or ``client-certificate``."""

    kind: str
    value: bytes = field(repr=False)


class HostileApiServer:
    """``with HostileApiServer(mode="expired") as server: ...``; ``server.url`` is ``https://127.0.0.1:<port>``."""

    def __init__(self, mode: str = "honest", *, dns_name: str = DNS_NAME, client_cas: Sequence[bytes] = (),
                 drip_limit: float = 30.0, huge_body_bytes: int = HUGE_BODY_BYTES, huge_body_length: bool = True,
                 token_user: str = TOKEN_USER, token_groups: Sequence[str] = TOKEN_GROUPS) -> None:  # fmt: skip
        self.ca = ClusterCA.create(common_name="hostile-ca", key_type="ec")
        self.dns_name = dns_name
        self.drip_limit, self.huge_body_bytes = drip_limit, huge_body_bytes
        self.huge_body_length = huge_body_length
        self.token_user, self.token_groups = token_user, tuple(token_groups)
        # None: every identity may read; a set: only client certificates in one of these groups may
        # (a stand-in for RBAC, e.g. a break-glass binding that does not name a renamed group yet).
        self.bound_groups: set[str] | None = None
        self.requests: list[RecordedRequest] = []
        self.handshake_failures: list[str] = []
        self.csrs: dict[str, dict[str, Any]] = {}
        self._client_cas = tuple(client_cas)
        self._mode = ""
        self.mode = mode
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._tmp: Path | None = None
        self._server: _TlsServer | None = None
        self._thread: threading.Thread | None = None

    # --- configuration --------------------------------------------------------------------------------

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        if value not in MODES:
            raise ValueError(f"unknown mode {value!r}; one of {', '.join(MODES)}")
        self._mode = value

    @property
    def ca_pem(self) -> bytes:
        return self.ca.cert_pem

    @property
    def ca_key(self) -> Any:
        return self.ca.key

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the hostile server is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def issue_client_cert(self, cn: str, groups: Sequence[str], lifetime: float = 3600.0, *,
                          not_before: float | None = None) -> tuple[bytes, bytes]:  # fmt: skip
        """A client certificate (P-256 key) signed by this server's CA: ``(cert_pem, key_pem)``."""
        start = None if not_before is None else dt.datetime.fromtimestamp(not_before, dt.UTC)
        return self.ca.issue_client_cert(cn, groups, dt.timedelta(seconds=lifetime), not_before=start)

    # --- what it received ----------------------------------------------------------------------------

    def credentials_seen(self) -> list[SeenCredential]:
        """Every bearer token, CSR and client certificate received, in order."""
        seen: list[SeenCredential] = []
        with self._lock:
            recorded = list(self.requests)
        for request in recorded:
            if request.bearer_token is not None:
                seen.append(SeenCredential("token", request.bearer_token.encode()))
            if request.client_cert_pem is not None:
                seen.append(SeenCredential("client-certificate", request.client_cert_pem))
            if (csr := request.csr_pem) is not None:
                seen.append(SeenCredential("csr", csr))
        return seen

    # --- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> HostileApiServer:
        self._tmp = Path(tempfile.mkdtemp(prefix="hostile-api-"))
        cert_pem, key_pem = self.ca.issue_serving_cert([self.dns_name, "localhost"], ["127.0.0.1"])
        (self._tmp / "tls.crt").write_bytes(cert_pem)
        (self._tmp / "tls.key").write_bytes(key_pem)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self._tmp / "tls.crt", self._tmp / "tls.key")
        context.verify_mode = ssl.CERT_OPTIONAL
        context.load_verify_locations(cadata=b"".join((self.ca_pem, *self._client_cas)).decode("ascii"))
        context.set_alpn_protocols(["http/1.1"])
        self._server = _TlsServer(("127.0.0.1", 0), _Handler, context, self)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="hostile-api", daemon=True)  # fmt: skip
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            with self._lock:
                open_connections = list(self._connections)
            for connection in open_connections:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
            self._server.server_close()  # joins the handler threads
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> HostileApiServer:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    # --- used by the handler -------------------------------------------------------------------------

    def _track(self, connection: socket.socket, add: bool) -> None:
        with self._lock:
            (self._connections.add if add else self._connections.discard)(connection)

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _answer(self, request: RecordedRequest) -> tuple[int, dict[str, Any]]:
        """The (status, JSON) an API server would give, before ``slow-drip``/``huge-body`` change the delivery."""
        if request.mode == "unauthorized":
            return 401, _status(401, "Unauthorized", "Unauthorized")
        if request.mode == "throttled":
            return 429, _status(429, "TooManyRequests", "Too many requests, please try again later.")
        user = self._user_of(request)
        if user is None:
            return 401, _status(401, "Unauthorized", "Unauthorized")
        path = request.path.split("?")[0]
        if path.endswith("/selfsubjectaccessreviews") or path == "/api/v1/namespaces/default/services/kubernetes":
            name, groups = user
            if self.bound_groups is not None and request.client_cert_pem is not None \
                    and not self.bound_groups & set(groups):  # fmt: skip
                return 403, _status(403, "Forbidden", f'User "{name}" cannot get resource "services" in API group ""')
        if request.method == "POST" and path.endswith("/selfsubjectreviews") and "/v1/" in path:
            name, groups = user
            return 201, {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview",
                         "status": {"userInfo": {"username": name, "groups": [*groups, "system:authenticated"]}}}
        if request.method == "POST" and path == "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews":
            review = json.loads(request.body or b"{}")
            review["status"] = {"allowed": True, "reason": "the hostile server allows everything"}
            return 201, review
        if request.method == "GET" and path == "/api/v1/namespaces/default/services/kubernetes":
            return 200, {"apiVersion": "v1", "kind": "Service",
                         "metadata": {"name": "kubernetes", "namespace": "default"},
                         "spec": {"clusterIP": "10.100.0.1", "ports": [{"name": "https", "port": 443}]}}
        if path == CSR_PATH and request.method == "POST":
            return self._create_csr(request)
        if path.startswith(CSR_PATH + "/"):
            return self._csr_call(request, path[len(CSR_PATH) + 1:])
        return 404, _status(404, "NotFound", f"the server could not find the requested resource ({path})")

    def _user_of(self, request: RecordedRequest) -> tuple[str, tuple[str, ...]] | None:
        if request.client_cert_pem is not None:
            subject = x509.load_pem_x509_certificate(request.client_cert_pem).subject
            names = [str(a.value) for a in subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
            groups = tuple(str(a.value) for a in subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME))
            return (names[0] if names else ""), groups
        if request.bearer_token is not None:
            return self.token_user, self.token_groups
        return None

    def _create_csr(self, request: RecordedRequest) -> tuple[int, dict[str, Any]]:
        try:
            csr = json.loads(request.body)
            name = str(csr["metadata"]["name"])
            parse_csr(base64.b64decode(csr["spec"]["request"]))
        except (ValueError, KeyError, TypeError) as exc:
            return 400, _status(400, "BadRequest", f"invalid CSR: {exc}")
        with self._lock:
            if name in self.csrs:
                return 409, _status(409, "AlreadyExists", f'certificatesigningrequests "{name}" already exists')
            csr["status"] = {}
            self.csrs[name] = csr
        return 201, csr

    def _csr_call(self, request: RecordedRequest, rest: str) -> tuple[int, dict[str, Any]]:
        name, _, sub = rest.partition("/")
        with self._lock:
            csr = self.csrs.get(name)
        if csr is None:
            return 404, _status(404, "NotFound", f'certificatesigningrequests "{name}" not found')
        if request.method == "GET" and not sub:
            return 200, csr
        if request.method == "DELETE" and not sub:
            with self._lock:
                self.csrs.pop(name, None)
            return 200, _status(200, "", "deleted", status="Success")
        if request.method == "PUT" and sub == "approval":
            conditions = (json.loads(request.body).get("status") or {}).get("conditions") or []
            csr["status"] = {"conditions": conditions}
            if any(c.get("type") == "Approved" for c in conditions):
                csr["status"]["certificate"] = base64.b64encode(self._issue(csr, request.mode)).decode("ascii")
            return 200, csr
        return 405, _status(405, "MethodNotAllowed", f"{request.method} {sub or name} is not allowed")

    def _issue(self, csr: dict[str, Any], mode: str) -> bytes:
        """The certificate ``mode`` issues for an approved CSR."""
        if mode == "garbage":
            return b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"
        request = parse_csr(base64.b64decode(csr["spec"]["request"]))
        now = dt.datetime.now(dt.UTC)
        lifetime = dt.timedelta(seconds=int(csr["spec"].get("expirationSeconds") or 3600))
        not_before, not_after = now - BACKDATE, now + lifetime
        if mode == "expired":
            not_before, not_after = now - dt.timedelta(hours=2), now - dt.timedelta(hours=1)
        elif mode == "not-yet-valid":
            not_before, not_after = now + dt.timedelta(hours=1), now + dt.timedelta(hours=1) + lifetime
        elif mode == "short-20s":
            not_before, not_after = now - dt.timedelta(seconds=1), now + dt.timedelta(seconds=20)
        subject = request.subject
        if mode == "extra-group":
            subject = x509.Name([*subject, x509.NameAttribute(NameOID.ORGANIZATION_NAME, EXTRA_GROUP)])
        public_key = ec.generate_private_key(ec.SECP256R1()).public_key() if mode == "wrong-key" \
            else request.public_key()
        usages = set(csr["spec"].get("usages") or ())
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.ca.certificate.subject)
            .public_key(public_key)  # type: ignore[arg-type]
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=mode == "ca-true", path_length=None), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.ca.key.public_key()),
                           critical=False)  # fmt: skip
        )
        signing = "digital signature" in usages or "signing" in usages
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=signing, content_commitment=False, key_encipherment="key encipherment" in usages,
            data_encipherment=False, key_agreement=False, key_cert_sign=mode == "ca-true", crl_sign=False,
            encipher_only=False, decipher_only=False), critical=True)  # fmt: skip
        if "client auth" in usages:
            builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        return builder.sign(self.ca.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)

    def _drip(self, connection: socket.socket, data: bytes) -> None:
        """One byte a second until all is sent, ``drip_limit`` passed or the server stops."""
        end = time.monotonic() + self.drip_limit
        for index in range(len(data)):
            if self._stopping.is_set() or time.monotonic() >= end:
                return
            connection.sendall(data[index:index + 1])
            self._stopping.wait(1.0)

    def _huge(self, connection: socket.socket) -> None:
        """A 300 MB answer produced chunk by chunk while it is sent; without ``huge_body_length`` it has no
        Content-Length and ends when the connection closes, so only counting the bytes read can stop it."""
        length = f"Content-Length: {self.huge_body_bytes}\r\n" if self.huge_body_length else ""
        head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{length}Connection: close\r\n\r\n".encode()
        connection.sendall(head)
        for chunk in _huge_json(self.huge_body_bytes):
            if self._stopping.is_set():
                return
            connection.sendall(chunk)


def _huge_json(size: int) -> Iterator[bytes]:
    """``{"items":"xxxx..."}`` of exactly ``size`` bytes, in chunks."""
    opening, closing = b'{"items":"', b'"}'
    yield opening
    left = size - len(opening) - len(closing)
    filler = b"x" * _CHUNK
    while left > 0:
        piece = filler[:min(left, _CHUNK)]
        left -= len(piece)
        yield piece
    yield closing


def _status(code: int, reason: str, message: str, status: str = "Failure") -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "status": status, "message": message, "reason": reason,
            "code": code}  # fmt: skip


class _TlsServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    """TLS is negotiated in each connection's own thread, so a slow client never blocks ``accept``."""

    daemon_threads = False
    block_on_close = True

    def __init__(self, address: tuple[str, int], handler: type[_Handler], context: ssl.SSLContext,
                 owner: HostileApiServer) -> None:  # fmt: skip
        self.context, self.owner = context, owner
        super().__init__(address, handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        raw: socket.socket = request
        raw.settimeout(10.0)
        connection = self.context.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
        self.owner._track(connection, True)
        try:
            try:
                connection.do_handshake()
            except (ssl.SSLError, OSError) as exc:
                with self.owner._lock:
                    self.owner.handshake_failures.append(f"{type(exc).__name__}: {exc}")
                return
            self.RequestHandlerClass(connection, client_address, self)
        finally:
            self.owner._track(connection, False)
            connection.close()

    def shutdown_request(self, request: Any) -> None:
        with contextlib.suppress(OSError):
            request.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that hang up mid-answer are expected here; nothing to print."""


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _TlsServer
    timeout = 10.0

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class names it so
        """Quiet: the test reads :attr:`HostileApiServer.requests` instead."""

    def _serve(self) -> None:
        owner = self.server.owner
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        der = self.connection.getpeercert(binary_form=True)  # type: ignore[attr-defined]
        request = RecordedRequest(
            method=self.command, path=self.path, headers={k.lower(): v for k, v in self.headers.items()},
            body=body, client_cert_pem=ssl.DER_cert_to_PEM_cert(der).encode() if der else None, mode=owner.mode,
        )  # fmt: skip
        owner._record(request)
        if request.mode == "huge-body":
            self.close_connection = True
            owner._huge(self.connection)
            return
        status, document = owner._answer(request)
        payload = json.dumps(document).encode()
        head = (f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\n\r\n").encode()  # fmt: skip
        if request.mode == "slow-drip":
            self.close_connection = True
            owner._drip(self.connection, head + payload)
            return
        self.wfile.write(head + payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve
