"""HTTPS to one server over ``http.client`` and ``ssl``, for :mod:`lifeline_agent.kube`.

One TLS context and one kept-alive connection per :class:`HttpsConnection`. Every request has one
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
from pathlib import Path
from typing import Any

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

    def __init__(self, host: str, port: int, *, ca_pem: bytes, server_name: str,
                 client_cert: tuple[Path, Path] | None = None, max_body: int = MAX_BODY) -> None:  # fmt: skip
        self.host, self.port, self.server_name, self.max_body = host, port, server_name, max_body
        self._ca_pem, self._client_cert = ca_pem, client_cert
        self._context: ssl.SSLContext | None = None
        self._sock: ssl.SSLSocket | None = None

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock = None

    def request(self, method: str, path: str, headers: dict[str, str], body: bytes | None,
                timeout: float) -> tuple[int, bytes]:  # fmt: skip
        """``(status, body)`` of one request that must be done within ``timeout`` seconds."""
        deadline = _Deadline(timeout)
        try:
            return self._exchange(method, path, headers, body, deadline)
        except BaseException:
            self.close()  # never reuse a connection in an unknown state
            raise

    def _exchange(self, method: str, path: str, headers: dict[str, str], body: bytes | None,
                  deadline: _Deadline) -> tuple[int, bytes]:  # fmt: skip
        try:
            sock = self._connection(deadline)
            sock.settimeout(deadline.remaining())
            sock.sendall(self._head(method, path, headers, body) + (body or b""))
            source = _ResponseSource(_DeadlineReader(sock, deadline))
            response = http.client.HTTPResponse(source, method=method)  # type: ignore[arg-type]
            response.begin()
            payload = self._body(response)
        except TimeoutError:
            raise DeadlineExceeded(f"no complete answer within {deadline.seconds:g} s") from None
        except ssl.SSLCertVerificationError as exc:
            raise TlsFailed(f"TLS failed: the server's certificate is not trusted ({exc.verify_message})") from None
        except ssl.SSLError as exc:
            raise TlsFailed(f"TLS failed: {exc.reason or exc}") from None
        except http.client.RemoteDisconnected:
            raise ConnectionFailed("the server closed the connection without answering") from None
        except http.client.HTTPException as exc:
            raise BadResponse(f"not an HTTP answer ({type(exc).__name__}: {exc})") from None
        except OSError as exc:
            raise ConnectionFailed(f"{type(exc).__name__}: {exc.strerror or exc}") from None
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
            sock = self._tls_context().wrap_socket(raw, server_hostname=self.server_name,
                                                   do_handshake_on_connect=False)  # fmt: skip
        except BaseException:
            raw.close()
            raise
        try:
            _handshake(sock, deadline)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        return sock

    def _tls_context(self) -> ssl.SSLContext:
        if self._context is None:
            try:
                context = ssl.create_default_context(cadata=self._ca_pem.decode("ascii"))
                if self._client_cert is not None:
                    context.load_cert_chain(*self._client_cert)
            except (ssl.SSLError, UnicodeDecodeError, ValueError) as exc:
                raise TlsFailed(f"the CA data or the client certificate is not usable: {exc}") from None
            context.set_alpn_protocols(["http/1.1"])
            self._context = context
        return self._context


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
