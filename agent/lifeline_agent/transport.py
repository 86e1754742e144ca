"""HTTPS to one server over ``http.client`` and ``ssl``, for :mod:`lifeline_agent.kube`.

One kept-alive connection per :class:`HttpsConnection`, over the TLS context its factory gives. Every request has one
deadline for all of it (connect, TLS handshake, sending, status line, headers and body): the socket
timeout is set to the time left before each read and write, so a server that drips a byte a second
fails the request at the deadline. Answers are read in bounded chunks and refused past ``max_body``.
"""

from __future__ import annotations

import http.client
import io
import select
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any, TypeVar

from lifeline_agent.tls_contexts import ClientTls

_T = TypeVar("_T")

MAX_BODY = 4 * 1024 * 1024  # a CSR, a review or a service is a few KiB
_CHUNK = 64 * 1024


class TransportError(Exception):
    """The request got no complete answer; subclasses say why."""


class ConnectionFailed(TransportError):
    """Refused, reset or closed by the server, or no route to it."""


class TlsFailed(TransportError):
    """The server's certificate is not trusted by the CA given, or the TLS handshake or a record broke."""


class DeadlineExceeded(TransportError):
    """The whole request took longer than its deadline."""


class BodyTooLarge(TransportError):
    """The answer is larger than the cap."""


class BadResponse(TransportError):
    """The server's answer is not HTTP/1.1."""


class _Deadline:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._end = time.monotonic() + seconds

    def remaining(self) -> float:
        left = self._end - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded(f"no complete answer within {self.seconds:g} s")
        return left


class _DeadlineReader(io.RawIOBase):
    """The socket as a raw stream whose every read waits at most until the deadline."""

    def __init__(self, sock: ssl.SSLSocket, deadline: _Deadline) -> None:
        super().__init__()
        self._sock, self.deadline = sock, deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        self._sock.settimeout(self.deadline.remaining())
        return self._sock.recv_into(buffer)


class _ResponseSource:
    """What :class:`http.client.HTTPResponse` reads from: it only calls ``makefile('rb')``."""

    def __init__(self, reader: _DeadlineReader) -> None:
        self._reader = reader

    def makefile(self, mode: str) -> io.BufferedReader:
        return io.BufferedReader(self._reader)


class HttpsConnection:
    """Requests to ``host:port`` over TLS, one at a time; not thread-safe. Nothing is retried."""

    def __init__(self, host: str, port: int, *, context: Callable[[], ClientTls], server_name: str,
                 max_body: int = MAX_BODY) -> None:  # fmt: skip
        """``context`` is called when the first connection is made; a ``ValueError`` from it is a TLS failure."""
        self.host, self.port, self.server_name, self.max_body = host, port, server_name, max_body
        self._address = (host, port, server_name)
        self._context_factory = context
        self._context: ClientTls | None = None
        self._sock: ssl.SSLSocket | None = None
        self._ticket_asked = False  # reading ``SSLSocket.session`` copies it (~0.3 ms): at most once per connection
        self._pending: tuple[str, _Deadline] | None = None  # the method and deadline of a sent request

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock, self._pending = None, None

    def request(self, method: str, path: str, headers: dict[str, str], body: bytes | None,
                timeout: float) -> tuple[int, bytes]:  # fmt: skip
        """``(status, body)`` of one request that must be done within ``timeout`` seconds."""
        self.send(method, path, headers, body, timeout)
        return self.receive()

    def send(self, method: str, path: str, headers: dict[str, str], body: bytes | None, timeout: float) -> None:
        """Send a request now; :meth:`receive` reads its answer later, within the same ``timeout``."""
        if self._pending is not None:
            raise RuntimeError("the answer to the previous request has not been read")
        deadline = _Deadline(timeout)
        self._guarded(deadline, lambda: self._send(method, path, headers, body, deadline))
        self._pending = (method, deadline)

    def receive(self) -> tuple[int, bytes]:
        """The answer to the request :meth:`send` sent."""
        if self._pending is None:
            raise RuntimeError("no request is waiting for its answer")
        method, deadline = self._pending
        self._pending = None
        return self._guarded(deadline, lambda: self._receive(method, deadline))

    def _guarded(self, deadline: _Deadline, action: Callable[[], _T]) -> _T:
        """``action`` with socket, TLS and HTTP errors named; the connection is dropped after any of them."""
        try:
            return action()
        except BaseException as exc:
            self.close()  # never reuse a connection in an unknown state
            if isinstance(exc, TransportError):
                raise
            error = _named(exc, deadline)
            if error is None:
                raise
            raise error from None

    def _send(self, method: str, path: str, headers: dict[str, str], body: bytes | None,
              deadline: _Deadline) -> None:  # fmt: skip
        sock = self._connection(deadline)
        sock.settimeout(deadline.remaining())
        sock.sendall(self._head(method, path, headers, body) + (body or b""))

    def _receive(self, method: str, deadline: _Deadline) -> tuple[int, bytes]:
        if self._sock is None:
            raise ConnectionFailed("the connection was closed before the answer was read")
        response = http.client.HTTPResponse(_ResponseSource(_DeadlineReader(self._sock, deadline)),  # type: ignore[arg-type]
                                            method=method)  # fmt: skip
        response.begin()
        payload = self._body(response)
        if self._context is not None and self._sock is not None and not self._ticket_asked:
            self._ticket_asked = True  # a TLS 1.3 ticket comes after the handshake, before the first answer
            if not (self._sock.session_reused and self._context.session_for(self._address)):
                self._context.remember(self._address, self._sock.session)  # resumed: the ticket held still serves
        if response.will_close:
            self.close()
        return response.status, payload

    def _head(self, method: str, path: str, headers: dict[str, str], body: bytes | None) -> bytes:
        host = f"[{self.host}]" if ":" in self.host else self.host
        lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{self.port}", *(f"{k}: {v}" for k, v in headers.items())]
        if any("\r" in line or "\n" in line for line in lines):
            raise ValueError("a request line or header contains a line break")
        if body is not None or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body or b'')}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _body(self, response: http.client.HTTPResponse) -> bytes:
        length = response.getheader("Content-Length")
        if length is not None and length.strip().isdigit() and int(length) > self.max_body:
            raise BodyTooLarge(f"the answer has {int(length)} bytes, more than the {self.max_body} allowed")
        chunks: list[bytes] = []
        size = 0
        while chunk := response.read(_CHUNK):
            size += len(chunk)
            if size > self.max_body:
                raise BodyTooLarge(f"the answer is longer than the {self.max_body} bytes allowed")
            chunks.append(chunk)
        return b"".join(chunks)

    def _connection(self, deadline: _Deadline) -> ssl.SSLSocket:
        if self._sock is not None and not _readable(self._sock):
            return self._sock
        self.close()  # a kept-alive connection the server closed (or wrote to unasked) is not reused
        raw = socket.create_connection((self.host, self.port), timeout=deadline.remaining())
        try:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # the request head and body go out at once
            tls = self._tls_context()
            sock = tls.context.wrap_socket(raw, server_hostname=self.server_name, do_handshake_on_connect=False,
                                           session=tls.session_for(self._address))  # fmt: skip
        except BaseException:
            raw.close()
            raise
        try:
            _handshake(sock, deadline)
        except BaseException:
            sock.close()
            raise
        self._sock, self._ticket_asked = sock, False
        return sock

    def _tls_context(self) -> ClientTls:
        if self._context is None:
            try:
                self._context = self._context_factory()
            except ValueError as exc:
                raise TlsFailed(str(exc)) from None
        return self._context


def _named(exc: BaseException, deadline: _Deadline) -> TransportError | None:
    """The :class:`TransportError` that ``exc`` from a socket, ``ssl`` or ``http.client`` means; ``None`` if none."""
    if isinstance(exc, TimeoutError):
        return DeadlineExceeded(f"no complete answer within {deadline.seconds:g} s")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return TlsFailed(f"TLS failed: the server's certificate is not trusted ({exc.verify_message})")
    if isinstance(exc, ssl.SSLError):
        return TlsFailed(f"TLS failed: {exc.reason or exc}")
    if isinstance(exc, http.client.RemoteDisconnected):
        return ConnectionFailed("the server closed the connection without answering")
    if isinstance(exc, http.client.HTTPException):
        return BadResponse(f"not an HTTP answer ({type(exc).__name__}: {exc})")
    if isinstance(exc, OSError):
        return ConnectionFailed(f"{type(exc).__name__}: {exc.strerror or exc}")
    return None


def _handshake(sock: ssl.SSLSocket, deadline: _Deadline) -> None:
    """The TLS handshake, non-blocking, so that a server dripping its handshake still meets the deadline."""
    sock.setblocking(False)
    while True:
        try:
            sock.do_handshake()
            return
        except ssl.SSLWantReadError:
            ready = select.select([sock], [], [], deadline.remaining())[0]
        except ssl.SSLWantWriteError:
            ready = select.select([], [sock], [], deadline.remaining())[1]
        if not ready:
            raise DeadlineExceeded(f"no TLS handshake within {deadline.seconds:g} s")


def _readable(sock: socket.socket) -> bool:
    """True when an idle connection has something to read: the server closed it, or it is out of step."""
    try:
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):
        return True
