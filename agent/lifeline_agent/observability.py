"""What the agent tells the outside world: per-cluster health, Prometheus metrics, ``/healthz``,
JSON logs for journald (with key material redacted) and ``sd_notify`` messages to systemd.

The reconcile loops publish a :class:`ClusterHealth` snapshot after every step; everything else
here is derived from those snapshots, so the loops never touch metrics or HTTP themselves.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import ipaddress
import json
import logging
import os
import re
import socket
import sys
import threading
import time
from dataclasses import dataclass
from enum import StrEnum
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar, TextIO

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

log = logging.getLogger(__name__)


class ClusterState(StrEnum):
    PENDING = "pending"
    READY = "ready"
    RENEWING = "renewing"
    NEEDS_LINK = "needs-link"
    REVOKED = "revoked"
    UNTRUSTED = "untrusted"  # the secret's endpoint or CA is not what EKS reports: not followed
    GROUP_CHANGED = "group-changed"  # the secret names another break-glass group than the certificate's
    FAILED = "failed"


SERVING_STATES = frozenset({ClusterState.READY, ClusterState.RENEWING})
HOOK_RESULTS = ("success", "failure", "timeout")
REPORT_RESULTS = ("success", "failure")
REQUEST_DEADLINE = 5.0  # seconds one metrics connection may last in all; a scrape takes milliseconds
MAX_CONNECTIONS = 8  # metrics connections served at once; more are answered 503 and closed


@dataclass
class ClusterHealth:
    """One cluster's state as its reconcile loop last saw it; times are Unix seconds."""

    cluster: str
    state: ClusterState
    kubeconfig_path: str
    certificate_not_after: float | None = None
    next_renewal: float | None = None
    last_verified: float | None = None
    last_renewal: float | None = None
    last_error: str | None = None


class MetricsAddressError(ValueError):
    """The metrics address is malformed or not a loopback address."""


class Observer:
    """Collects the clusters' health snapshots and exposes them as metrics and a health verdict."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # *_created series only double the output
        if registry is None:
            registry = CollectorRegistry()
            ProcessCollector(registry=registry)
        self.registry = registry
        self._lock = threading.Lock()
        self._clusters: dict[str, ClusterHealth] = {}
        self._link_up: bool | None = None
        self._expiry = Gauge(
            "lifeline_certificate_expiry_timestamp_seconds",
            "notAfter of the installed client certificate",
            ["cluster"],
            registry=registry,
        )
        self._next_renewal = Gauge(
            "lifeline_certificate_renewal_deadline_timestamp_seconds",
            "When the agent will next renew the client certificate",
            ["cluster"],
            registry=registry,
        )
        self._verified = Gauge(
            "lifeline_kubeconfig_verified_timestamp_seconds",
            "Last time the installed kubeconfig was proven against the API server",
            ["cluster"],
            registry=registry,
        )
        self._last_renewal = Gauge(
            "lifeline_last_renewal_timestamp_seconds",
            "Last time a new certificate was installed",
            ["cluster"],
            registry=registry,
        )
        self._renewals = Counter(
            "lifeline_renewals",
            "Certificate renewals by outcome",
            ["cluster", "result"],
            registry=registry,
        )
        self._hooks = Counter(
            "lifeline_install_hooks",
            "Runs of the cluster's post_install_hook by outcome (failure: exit status not 0 or not started)",
            ["cluster", "result"],
            registry=registry,
        )
        self._readiness_reports = Counter(
            "lifeline_readiness_reports",
            "Readiness reports to CloudWatch (PutMetricData) by outcome",
            ["result"],
            registry=registry,
        )
        self._link = Gauge(
            "lifeline_service_link_up",
            "1 when the Region answers the agent's probe through the service link",
            registry=registry,
        )
        self._state = Gauge(
            "lifeline_cluster_state",
            "1 for the cluster's current state, 0 for the others",
            ["cluster", "state"],
            registry=registry,
        )

    def publish(self, health: ClusterHealth) -> None:
        with self._lock:
            previous = self._clusters.get(health.cluster)
            self._clusters[health.cluster] = health
        if previous is None or previous.state != health.state:
            log.info(
                "cluster state %s -> %s",
                previous.state if previous else "(new)",
                health.state,
                extra={"cluster": health.cluster, "state": str(health.state), "error": health.last_error},
            )
        for state in ClusterState:
            self._state.labels(health.cluster, state.value).set(1 if state is health.state else 0)
        for gauge, value in (
            (self._expiry, health.certificate_not_after),
            (self._next_renewal, health.next_renewal),
            (self._verified, health.last_verified),
            (self._last_renewal, health.last_renewal),
        ):
            child = gauge.labels(health.cluster)
            child.set(value if value is not None else 0)
        for result in ("success", "failure"):
            self._renewals.labels(health.cluster, result)

    def renewal(self, cluster: str, result: str) -> None:
        if result not in ("success", "failure"):
            raise ValueError(f"renewal result must be 'success' or 'failure', not {result!r}")
        self._renewals.labels(cluster, result).inc()

    def install_hook(self, cluster: str, result: str) -> None:
        if result not in HOOK_RESULTS:
            raise ValueError(f"hook result must be one of {HOOK_RESULTS}, not {result!r}")
        self._hooks.labels(cluster, result).inc()

    def readiness_report(self, result: str) -> None:
        if result not in REPORT_RESULTS:
            raise ValueError(f"report result must be one of {REPORT_RESULTS}, not {result!r}")
        self._readiness_reports.labels(result).inc()

    def link(self, up: bool) -> None:
        with self._lock:
            changed = self._link_up != up
            self._link_up = up
        self._link.set(1 if up else 0)
        if changed:
            log.warning("service link %s", "connected" if up else "disconnected", extra={"link_up": up})

    @property
    def link_up(self) -> bool | None:
        """The last reported link state; None before the first probe."""
        with self._lock:
            return self._link_up

    def snapshot(self) -> list[ClusterHealth]:
        with self._lock:
            return [self._clusters[name] for name in sorted(self._clusters)]

    def healthy(self, now: float | None = None) -> tuple[bool, str]:
        """True only if every cluster has a verified, unexpired kubeconfig on disk; else the reasons."""
        now = time.time() if now is None else now
        clusters = self.snapshot()
        if not clusters:
            return False, "no cluster reported yet"
        problems = [problem for health in clusters if (problem := readiness_problem(health, now))]
        if problems:
            return False, "; ".join(problems)
        return True, f"ok: {len(clusters)} cluster(s) ready"

    def serve(self, address: str, *, deadline: float = REQUEST_DEADLINE,
              max_connections: int = MAX_CONNECTIONS) -> HttpEndpoint:  # fmt: skip
        """Serve ``/healthz`` and ``/metrics`` on ``address`` (``host:port``, loopback only, port 0 = any)."""
        host, port = parse_loopback_address(address)
        return HttpEndpoint(self, host, port, deadline=deadline, max_connections=max_connections)


def readiness_problem(health: ClusterHealth, now: float) -> str | None:
    """Why the cluster has no verified, unexpired kubeconfig on disk right now; None when it has one."""
    name = health.cluster
    if health.state not in SERVING_STATES:
        detail = f" ({health.last_error})" if health.last_error else ""
        return f"{name}: {health.state}{detail}"
    if health.last_verified is None:
        return f"{name}: kubeconfig never verified"
    if health.certificate_not_after is None:
        return f"{name}: no certificate installed"
    if health.certificate_not_after <= now:
        expired = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(health.certificate_not_after))
        return f"{name}: certificate expired at {expired}"
    if not Path(health.kubeconfig_path).is_file():
        return f"{name}: kubeconfig missing at {health.kubeconfig_path}"
    return None


def parse_loopback_address(address: str) -> tuple[str, int]:
    """Split ``127.0.0.1:9877`` / ``[::1]:9877`` / ``localhost:9877``; refuse non-loopback hosts."""
    host, sep, port_text = address.rpartition(":")
    if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise MetricsAddressError(f"metrics address {address!r} is not host:port")
    host = host.removeprefix("[").removesuffix("]")
    if host == "localhost":
        host = "127.0.0.1"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError as exc:
        raise MetricsAddressError(f"metrics address {address!r}: host must be a loopback IP or localhost") from exc
    if not ip.is_loopback:
        raise MetricsAddressError(f"metrics address {address!r}: {host} is not a loopback address")
    return host, int(port_text)


_BUSY_REPLY = b"HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"


class _Handler(BaseHTTPRequestHandler):
    observer: ClassVar[Observer]
    allowed_hosts: ClassVar[frozenset[str]]  # Host header values (lower case) this endpoint answers to
    deadline: ClassVar[float]
    server_version = "lifeline-agent"

    def setup(self) -> None:
        super().setup()
        # Per-read timeouts let a client that drips a byte a second hold a thread forever; shutting the
        # socket down at the deadline ends whatever read or write is blocked at that moment.
        self._cutoff = threading.Timer(self.deadline, self._cut_off)
        self._cutoff.daemon = True
        self._cutoff.start()

    def _cut_off(self) -> None:
        log.info("http: connection from %s cut off after %g s", self.client_address[0], self.deadline)
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def finish(self) -> None:
        self._cutoff.cancel()
        with contextlib.suppress(OSError):
            super().finish()

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        hosts = self.headers.get_all("Host") or []
        if len(hosts) != 1:
            self._reply(HTTPStatus.BAD_REQUEST, b"exactly one Host header is required\n", "text/plain; charset=utf-8")
            return
        if hosts[0].strip().lower() not in self.allowed_hosts:  # DNS rebinding: a browser sends the page's name
            log.info("http: refused a request for Host %r", hosts[0][:100])
            self._reply(HTTPStatus.MISDIRECTED_REQUEST, b"this endpoint answers only to its own address\n",
                        "text/plain; charset=utf-8")  # fmt: skip
            return
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._reply(HTTPStatus.OK, generate_latest(self.observer.registry), CONTENT_TYPE_LATEST)
        elif path == "/healthz":
            ok, reason = self.observer.healthy()
            status = HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE
            self._reply(status, (reason + "\n").encode(), "text/plain; charset=utf-8")
        else:
            self._reply(HTTPStatus.NOT_FOUND, b"not found: try /healthz or /metrics\n", "text/plain; charset=utf-8")

    def _reply(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (signature of the base class)
        log.debug("http: " + format, *args)


class _Server(ThreadingHTTPServer):
    """One thread per connection, at most ``max_connections`` of them."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[_Handler], max_connections: int) -> None:
        self.max_connections = max_connections
        self._slots = threading.BoundedSemaphore(max_connections)
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            log.info("http: %d connections already open: refused one from %s", self.max_connections,
                     client_address[0])  # fmt: skip
            with contextlib.suppress(OSError):
                request.setblocking(False)
                request.send(_BUSY_REPLY)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, OSError):  # the client went away, or was cut off at the deadline
            log.debug("http: connection from %s ended: %s", client_address[0], error)
        else:
            log.exception("http: error serving %s", client_address[0])


class HttpEndpoint:
    """A running ``/healthz`` + ``/metrics`` server on a background thread."""

    def __init__(self, observer: Observer, host: str, port: int, *, deadline: float = REQUEST_DEADLINE,
                 max_connections: int = MAX_CONNECTIONS) -> None:  # fmt: skip
        attributes = {"observer": observer, "deadline": deadline, "timeout": deadline, "allowed_hosts": frozenset()}
        handler: type[_Handler] = type("ObserverHandler", (_Handler,), attributes)
        server_class = type("_Server6", (_Server,), {"address_family": socket.AF_INET6}) if ":" in host else _Server
        self._server = server_class((host, port), handler, max_connections)
        self.host = host
        self.port: int = self._server.server_address[1]
        names = ("localhost", f"[{host}]" if ":" in host else host)
        handler.allowed_hosts = frozenset(names) | {f"{name}:{self.port}" for name in names}
        self._thread = threading.Thread(target=self._server.serve_forever, name="lifeline-http", daemon=True)
        self._thread.start()
        log.info("serving /healthz and /metrics", extra={"address": self.url})

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> HttpEndpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- logging -------------------------------------------------------------------------------------

REDACTED = "[REDACTED]"
_PEM_PRIVATE_KEY = re.compile(
    r"-----BEGIN ((?:[A-Z0-9]+ )*)PRIVATE KEY-----.*?(?:-----END \1PRIVATE KEY-----|\Z)", re.DOTALL
)
_BASE64_PEM = re.compile(r"LS0tLS1CRUdJTi[A-Za-z0-9+/=]*")
_CLIENT_KEY_DATA = re.compile(r"(client-key-data['\"]?\s*[:=]\s*['\"]?)[A-Za-z0-9+/=]+")
_EKS_TOKEN = re.compile(r"k8s-aws-v1\.[A-Za-z0-9_\-]+")


def _redact_base64_pem(match: re.Match[str]) -> str:
    text = match.group(0)
    try:
        decoded = base64.b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return text
    return REDACTED if b"PRIVATE KEY" in decoded else text


def redact(text: str) -> str:
    """Remove private keys (PEM or base64 PEM), kubeconfig client keys and EKS tokens from ``text``."""
    text = _PEM_PRIVATE_KEY.sub(REDACTED, text)
    text = _BASE64_PEM.sub(_redact_base64_pem, text)
    text = _CLIENT_KEY_DATA.sub(r"\1" + REDACTED, text)
    return _EKS_TOKEN.sub("k8s-aws-v1." + REDACTED, text)


_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class RedactingFilter(logging.Filter):
    """Rewrites a record's message, exception text and string extras with :func:`redact`."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        if record.exc_info:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for key, value in list(vars(record).items()):
            if key not in _RECORD_ATTRIBUTES:
                setattr(record, key, _redact_value(value))
        return True


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, bytes):
        return redact(value.decode("utf-8", "replace"))
    if isinstance(value, dict):
        return {k: _redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(v) for v in value]
    return value


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the record's extras, exception text.

    Hand-written (a dozen lines) so the agent needs no logging dependency beyond the stdlib.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES and not key.startswith("_"):
                entry[key] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, default=str, ensure_ascii=False)


QUIET_LIBRARIES = ("botocore", "boto3", "urllib3", "kubernetes")


def configure_logging(level: str = "INFO", stream: TextIO | None = None) -> None:
    """Send every log record to stdout (or ``stream``) as a JSON line for journald, key material redacted."""
    handler = logging.StreamHandler(sys.stdout if stream is None else stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    chatty_level = logging.DEBUG if level.upper() == "DEBUG" else logging.WARNING
    for chatty in QUIET_LIBRARIES:  # e.g. botocore's "Found credentials" on every link probe
        logging.getLogger(chatty).setLevel(chatty_level)
    logging.captureWarnings(True)


# --- systemd -------------------------------------------------------------------------------------


class SystemdNotifier:
    """``sd_notify(3)`` over the ``NOTIFY_SOCKET`` datagram socket; every call is a no-op without it.

    A few lines over ``socket`` rather than a library: the pure-Python packages for this (``sdnotify``
    among them) are abandoned, and the protocol is one datagram per message.
    """

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._address = _socket_address(env.get("NOTIFY_SOCKET", ""))
        self._watchdog_usec = env.get("WATCHDOG_USEC", "")
        self._watchdog_pid = env.get("WATCHDOG_PID", "")

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=value`` lines in one datagram; False when there is no socket or sending failed."""
        if self._address is None:
            return False
        message = "\n".join(assignments).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(message, self._address)
        except OSError as exc:
            log.warning("sd_notify failed: %s", exc)
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *([_status_line(status)] if status is not None else []))

    def status(self, text: str) -> bool:
        return self.notify(_status_line(text))

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def watchdog_interval(self) -> float | None:
        """Seconds between ``WATCHDOG=1`` pings (half of ``WatchdogSec``), or None if no watchdog is asked."""
        if self._address is None or not self._watchdog_usec.isdigit() or int(self._watchdog_usec) == 0:
            return None
        if self._watchdog_pid and self._watchdog_pid != str(os.getpid()):
            return None
        return int(self._watchdog_usec) / 2_000_000


def _status_line(text: str) -> str:
    return "STATUS=" + " ".join(text.split())


def _socket_address(value: str) -> str | bytes | None:
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None
