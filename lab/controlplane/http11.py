"""HTTP/1.1 persistent connections for werkzeug's WSGI server, kept the way kube-apiserver (Go's net/http) keeps them.

werkzeug's own handler answers every request with ``Connection: close`` (and then waits for more bytes to drain),
so a client of the lab would open a new TLS connection for each request. :class:`KeepAliveHandler` keeps the
connection open after an answer whose end the client can find: one with a ``Content-Length``, one without a body
(``HEAD``, 1xx, 204, 304), or one sent with chunked transfer coding when the application gives no length (watch
streams). Before the next request it reads what the application left of the request body, so that the next
request line is found where it starts. It closes the connection when the client asks (``Connection: close``, or
HTTP/1.0 without ``keep-alive``), when a request body cannot be delimited (a bad ``Content-Length``: 400), when
the rest of a body is too long to drain, when an answer broke off, and after ``IDLE_TIMEOUT`` with no request.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.exceptions import ClientDisconnected
from werkzeug.serving import WSGIRequestHandler
from werkzeug.wsgi import LimitedStream

log = logging.getLogger(__name__)

IDLE_TIMEOUT = 90.0  # kube-apiserver's http.Server IdleTimeout (and a socket timeout for every read and write)
DRAIN_LIMIT = 256 * 1024  # Go's net/http reads at most this much of an unread body before it closes instead
NO_BODY_STATUS = (204, 304)


class _Answer:
    """One response: the status line and headers go with the first body bytes; chunked when there is no length."""

    def __init__(self, handler: KeepAliveHandler, method: str) -> None:
        self.handler, self.method = handler, method
        self.status: str | None = None
        self.headers: list[tuple[str, str]] = []
        self.sent = self.chunked = self.bodiless = False

    def start_response(self, status: str, headers: list[tuple[str, str]],
                       exc_info: Any = None) -> Callable[[bytes], None]:  # fmt: skip
        if exc_info and self.sent:
            raise exc_info[1].with_traceback(exc_info[2])
        self.status, self.headers = status, headers
        return self.write

    def _send_head(self) -> None:
        handler = self.handler
        if self.status is None:
            raise AssertionError("the application wrote before start_response")
        code_text, _, reason = self.status.partition(" ")
        code = int(code_text)
        names = {name.lower() for name, _ in self.headers}
        self.bodiless = self.method == "HEAD" or 100 <= code < 200 or code in NO_BODY_STATUS
        handler.send_response(code, reason)
        for name, value in self.headers:
            handler.send_header(name, value)
        if "content-length" not in names and not self.bodiless:
            if handler.request_version >= "HTTP/1.1":
                self.chunked = True
                handler.send_header("Transfer-Encoding", "chunked")
            else:
                handler.close_connection = True  # an HTTP/1.0 client finds the end of the body at the close
        if handler.close_connection:
            handler.send_header("Connection", "close")
        elif handler.request_version < "HTTP/1.1":
            handler.send_header("Connection", "keep-alive")  # an HTTP/1.0 client that asked for it
        handler.end_headers()
        self.sent = True

    def write(self, data: bytes) -> None:
        if not self.sent:
            self._send_head()
        if not data or self.bodiless:
            return
        wfile = self.handler.wfile
        if self.chunked:
            wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            wfile.flush()  # a watch event goes out when it happens
        else:
            wfile.write(data)

    def end(self) -> None:
        if not self.sent:
            self._send_head()
        if self.chunked:
            self.handler.wfile.write(b"0\r\n\r\n")


class KeepAliveHandler(WSGIRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = IDLE_TIMEOUT
    wbufsize = -1  # buffered: the headers and a short body leave in one TLS record (flushed after each answer)

    def handle_expect_100(self) -> bool:
        super().handle_expect_100()  # called while the request is parsed; the wfile is buffered
        self.wfile.flush()
        return True

    def run_wsgi(self) -> None:
        environ = self.make_environ()
        body = self._request_body(environ)
        if body is None:
            self.close_connection = True
            self.send_error(400, "bad Content-Length")
            return
        answer = _Answer(self, environ["REQUEST_METHOD"])
        try:
            result: Iterable[bytes] = self.server.app(environ, answer.start_response)
            try:
                for data in result:
                    answer.write(data)
                answer.end()
                self.wfile.flush()
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        except (ConnectionError, TimeoutError):
            self.close_connection = True
            return
        except Exception:  # noqa: BLE001 - the client is told (500) or the connection ends; never reused
            log.debug("%s %s failed", self.command, self.path, exc_info=True)
            self.close_connection = True
            if not answer.sent:
                self.send_error(500)
            return
        if not _drained(body):
            self.close_connection = True

    def _request_body(self, environ: dict[str, Any]) -> Any:
        """The request body stream, delimited; ``None`` when its length is not a number."""
        if environ.get("wsgi.input_terminated"):  # chunked: werkzeug's DechunkedInput ends it
            return environ["wsgi.input"]
        text = environ.get("CONTENT_LENGTH", "").strip()
        if text and not text.isdigit():
            return None
        environ["wsgi.input"] = LimitedStream(self.rfile, int(text or 0))
        environ["wsgi.input_terminated"] = True
        return environ["wsgi.input"]


def _drained(body: Any) -> bool:
    """Read what the application left of ``body``; False when that is too much or the body broke off."""
    left = DRAIN_LIMIT
    try:
        while chunk := body.read(min(64 * 1024, left + 1)):
            left -= len(chunk)
            if left < 0:
                return False
    except (OSError, ValueError, ClientDisconnected):
        return False
    return True
