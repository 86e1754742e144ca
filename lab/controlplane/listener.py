"""One HTTPS listener (a control-plane "instance"): werkzeug's threaded server with TLS done per connection and
connections kept alive between requests (:mod:`.http11`).

The TLS handshake runs in the connection's own thread (not in ``accept()``), so one stuck client cannot
block the others. Client certificates are requested, not required, and verified by the authenticator
(issuer and validity), so a bad certificate gets a Kubernetes 401 rather than a TLS alert.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import socket
import ssl
import threading
from pathlib import Path
from typing import Any

from werkzeug.serving import ThreadedWSGIServer

from .http11 import KeepAliveHandler

log = logging.getLogger(__name__)

X509_V_FLAG_NO_CHECK_TIME = 0x200000  # used when the verify callback cannot be installed
HANDSHAKE_TIMEOUT = 10.0
# werkzeug writes the headers and the body of an answer separately: with Nagle's algorithm on, the body waits
# for the client's delayed ACK of the headers. kube-apiserver (Go) sets TCP_NODELAY on every connection too.
# False only to measure the difference (bench/lab_speed.py).
TCP_NODELAY = True


def tls_context(directory: Path, ca_pem: bytes) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(directory / "tls.crt", directory / "tls.key")
    context.load_verify_locations(cadata=ca_pem.decode("ascii"))
    context.verify_mode = ssl.CERT_OPTIONAL
    context.verify_flags |= X509_V_FLAG_NO_CHECK_TIME
    context.set_alpn_protocols(["http/1.1"])
    defer_client_verification(context)
    return context


_VERIFY_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_void_p)
_ACCEPT_ANY = _VERIFY_CALLBACK(lambda preverify_ok, store_ctx: 1)
SSL_VERIFY_PEER = 1


def defer_client_verification(context: ssl.SSLContext) -> bool:
    """Request a client certificate but leave its verification to the authenticator, as kube-apiserver does.

    A certificate from another CA, or an expired one, then gets a Kubernetes 401 (kubectl: "You must be
    logged in to the server (Unauthorized)") instead of a TLS alert. Python's ``ssl`` cannot set a verify
    callback, so OpenSSL is called directly; the ``SSL_CTX`` pointer is checked against the context's own
    verify mode and options first, and on any doubt nothing changes (the handshake then verifies
    certificates itself, which is stricter, never looser).
    """
    try:
        major, minor = ssl.OPENSSL_VERSION_INFO[:2]
        soname = "libssl.so.3" if major >= 3 else f"libssl.so.{major}.{minor}"
        # RTLD_NOLOAD: only the copy of libssl this Python already uses, never another one.
        libssl = ctypes.CDLL(soname, mode=os.RTLD_NOLOAD | os.RTLD_LAZY)
        ssl_ctx = ctypes.c_void_p.from_address(id(context) + object.__basicsize__).value
        libssl.SSL_CTX_get_verify_mode.argtypes = [ctypes.c_void_p]
        libssl.SSL_CTX_get_options.argtypes = [ctypes.c_void_p]
        libssl.SSL_CTX_get_options.restype = ctypes.c_uint64
        if (not ssl_ctx or libssl.SSL_CTX_get_verify_mode(ssl_ctx) != SSL_VERIFY_PEER
                or libssl.SSL_CTX_get_options(ssl_ctx) != int(context.options)):
            log.warning("client certificates are verified during the TLS handshake (OpenSSL context not found)")
            return False
        libssl.SSL_CTX_set_verify.argtypes = [ctypes.c_void_p, ctypes.c_int, _VERIFY_CALLBACK]
        libssl.SSL_CTX_set_verify(ssl_ctx, SSL_VERIFY_PEER, _ACCEPT_ANY)
        return True
    except (OSError, AttributeError, ValueError) as exc:
        log.warning("client certificates are verified during the TLS handshake: %s", exc)
        return False


def bind_same_port(ips: list[str], port: int, attempts: int = 50) -> tuple[dict[str, socket.socket], int]:
    """Listening sockets on every IP with one port number (``0`` = any port free on all of them)."""
    last_error: OSError | None = None
    for _ in range(attempts):
        sockets: dict[str, socket.socket] = {}
        chosen = port
        try:
            for ip in ips:
                family = socket.AF_INET6 if ":" in ip else socket.AF_INET
                sock = socket.socket(family, socket.SOCK_STREAM)
                sockets[ip] = sock
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((ip, chosen))
                chosen = chosen or sock.getsockname()[1]
            for sock in sockets.values():
                sock.listen(128)
            return sockets, chosen
        except OSError as exc:
            last_error = exc
            for sock in sockets.values():
                sock.close()
            if port:
                break
    raise OSError(f"cannot listen on {ips} port {port}: {last_error}")


class _QuietHandler(KeepAliveHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        log.debug("%s %s -> %s", self.command, self.path, code)

    def log_error(self, format: str, *args: Any) -> None:  # noqa: A002 - base class signature
        log.debug(format, *args)


class _TlsServer(ThreadedWSGIServer):
    daemon_threads = True

    def __init__(self, ip: str, sock: socket.socket, app: Any, context: ssl.SSLContext) -> None:
        super().__init__(ip, sock.getsockname()[1], app, handler=_QuietHandler, fd=sock.fileno())
        sock.close()
        self.ssl_context = context
        self._connections: set[ssl.SSLSocket] = set()
        self._connections_lock = threading.Lock()

    def finish_request(self, request: Any, client_address: Any) -> None:
        if TCP_NODELAY:
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        request.settimeout(HANDSHAKE_TIMEOUT)
        try:
            assert self.ssl_context is not None
            connection = self.ssl_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            log.debug("TLS handshake with %s failed: %s", client_address, exc)
            return
        connection.settimeout(None)
        with self._connections_lock:
            self._connections.add(connection)
        try:
            super().finish_request(connection, client_address)
        finally:
            with self._connections_lock:
                self._connections.discard(connection)
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_WR)
            connection.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("connection from %s ended with an error", client_address, exc_info=True)

    def drop_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class Listener:
    def __init__(self, ip: str, sock: socket.socket, app: Any, tls_dir: Path, ca_pem: bytes) -> None:
        self.ip = ip
        self.server = _TlsServer(ip, sock, app, tls_context(tls_dir, ca_pem))
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1},
                                       name=f"apiserver-{ip}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.drop_connections()
        self.thread.join(timeout=5)
