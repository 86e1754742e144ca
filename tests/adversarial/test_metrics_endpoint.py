"""The agent's `/metrics` + `/healthz` endpoint against hostile local clients (issue 9, case 4), over
real sockets: a client that drips one byte at a time is cut off at the whole-connection deadline, no
more than a bounded number of connections hold a thread, and a request whose Host header is not the
endpoint's own address (DNS rebinding from a browser) is refused."""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from lifeline_agent.observability import MAX_CONNECTIONS, REQUEST_DEADLINE, HttpEndpoint, Observer


@pytest.fixture
def endpoint() -> Iterator[HttpEndpoint]:
    with Observer().serve("127.0.0.1:0") as served:
        yield served


def get(endpoint: HttpEndpoint, host: str | None, path: str = "/metrics") -> tuple[int, bytes]:
    """GET ``path`` with exactly the Host header ``host`` (None: without one)."""
    connection = http.client.HTTPConnection(endpoint.host, endpoint.port, timeout=10)
    try:
        connection.putrequest("GET", path, skip_host=True)
        if host is not None:
            connection.putheader("Host", host)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def handler_threads() -> int:
    return sum(1 for thread in threading.enumerate() if "process_request_thread" in thread.name)


def closed_by_peer(sock: socket.socket) -> bool:
    """True once the server has closed ``sock`` (EOF or reset); False while it is still open."""
    sock.setblocking(False)
    try:
        return sock.recv(1024) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        sock.setblocking(True)


def test_a_client_dripping_one_byte_at_a_time_is_cut_off_at_the_deadline(endpoint: HttpEndpoint) -> None:
    request = f"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:{endpoint.port}\r\nX-Drip: {'x' * 200}\r\n\r\n".encode()
    with socket.create_connection((endpoint.host, endpoint.port), timeout=5) as sock:
        started = time.monotonic()
        sent = 0
        while sent < len(request) and time.monotonic() - started < REQUEST_DEADLINE + 5:
            try:
                sock.send(request[sent : sent + 1])
            except OSError:
                break
            sent += 1
            if closed_by_peer(sock):
                break
            time.sleep(0.25)  # well inside any per-read timeout: only a whole-request deadline ends this
        elapsed = time.monotonic() - started
        assert closed_by_peer(sock) or sent < len(request), "the server never closed the dripping connection"
    assert sent < len(request), f"the whole request ({sent} bytes over {elapsed:.1f} s) got through"
    assert REQUEST_DEADLINE - 0.5 <= elapsed <= REQUEST_DEADLINE + 1.5, elapsed
    assert get(endpoint, f"127.0.0.1:{endpoint.port}")[0] == 200  # and its slot is free again


def test_connections_beyond_the_bound_are_refused_and_hold_no_thread() -> None:
    deadline = 3.0
    before = handler_threads()
    with Observer().serve("127.0.0.1:0", deadline=deadline) as endpoint:
        started = time.monotonic()
        idle = [socket.create_connection((endpoint.host, endpoint.port), timeout=5) for _ in range(MAX_CONNECTIONS)]
        try:
            while handler_threads() - before < MAX_CONNECTIONS and time.monotonic() - started < deadline / 2:
                time.sleep(0.01)
            for _ in range(12):  # one after the other, so that each is accepted while the idle ones hold the slots
                with socket.create_connection((endpoint.host, endpoint.port), timeout=5) as extra:
                    with contextlib.suppress(OSError):
                        extra.sendall(f"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:{endpoint.port}\r\n\r\n".encode())
                    try:
                        answer = extra.recv(4096)
                    except OSError:
                        answer = b""
                assert answer == b"" or answer.startswith(b"HTTP/1.0 503 "), answer[:200]
                assert handler_threads() - before == MAX_CONNECTIONS
            assert time.monotonic() - started < deadline, "too slow to prove anything: the idle slots were freed"
            assert not any(closed_by_peer(sock) for sock in idle)
            while not all(closed_by_peer(sock) for sock in idle) and time.monotonic() - started < deadline + 3:
                time.sleep(0.1)
            assert all(closed_by_peer(sock) for sock in idle), "idle connections outlived the deadline"
            assert get(endpoint, f"127.0.0.1:{endpoint.port}")[0] == 200
        finally:
            for sock in idle:
                sock.close()


@pytest.mark.parametrize(
    "host",
    ["attacker.example", "attacker.example:{port}", "127.0.0.1.nip.io:{port}", "127.0.0.1:{other}", "127.0.0.2:{port}",
     "localhost:{other}", "[::1]:{port}", "localhost.attacker.example"],
)  # fmt: skip
def test_a_foreign_host_header_is_refused(endpoint: HttpEndpoint, host: str) -> None:
    header = host.format(port=endpoint.port, other=endpoint.port + 1 if endpoint.port < 65535 else 1)
    for path in ("/metrics", "/healthz"):
        status, body = get(endpoint, header, path)
        assert status == 421, (header, path, status)
        assert b"lifeline_" not in body and b"cluster" not in body


def test_a_request_without_exactly_one_host_header_is_refused(endpoint: HttpEndpoint) -> None:
    assert get(endpoint, None)[0] == 400
    connection = http.client.HTTPConnection(endpoint.host, endpoint.port, timeout=10)
    try:
        connection.putrequest("GET", "/metrics", skip_host=True)
        connection.putheader("Host", f"127.0.0.1:{endpoint.port}")
        connection.putheader("Host", "attacker.example")
        connection.endheaders()
        assert connection.getresponse().status == 400
    finally:
        connection.close()


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "127.0.0.1", "localhost:{port}", "localhost", "LocalHost:{port}"])
def test_the_endpoints_own_address_and_localhost_are_served(endpoint: HttpEndpoint, host: str) -> None:
    status, body = get(endpoint, host.format(port=endpoint.port))
    assert status == 200
    assert b"lifeline_service_link_up" in body
    assert get(endpoint, host.format(port=endpoint.port), "/healthz")[0] == 503  # no cluster reported yet


def test_an_ipv6_endpoint_answers_to_its_bracketed_address_and_localhost() -> None:
    with Observer().serve("[::1]:0") as endpoint:
        for host in (f"[::1]:{endpoint.port}", "[::1]", f"localhost:{endpoint.port}"):
            assert get(endpoint, host)[0] == 200, host
        assert get(endpoint, f"127.0.0.1:{endpoint.port}")[0] == 421
