"""The service link on real sockets: relays while up; a cut hangs (no RST, no FIN); restore works again."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from lab.link import LinkError, ServiceLink


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(4096):
            self.request.sendall(data)


@pytest.fixture
def echo_server() -> Iterator[tuple[str, int]]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[0], server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def link() -> Iterator[ServiceLink]:
    service_link = ServiceLink()
    yield service_link
    service_link.stop()


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.settimeout(1.0)
    return sock


def _wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 5
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def _closed_by_relay(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def _echo(sock: socket.socket, payload: bytes) -> bytes:
    sock.sendall(payload)
    received = b""
    while len(received) < len(payload):
        chunk = sock.recv(4096)
        if not chunk:
            break
        received += chunk
    return received


def test_relays_bytes_both_ways_while_up(link: ServiceLink, echo_server: tuple[str, int]) -> None:
    port = link.add_route("echo", *echo_server)
    with _connect(port) as sock:
        assert _echo(sock, b"hello region") == b"hello region"
        assert _echo(sock, b"x" * 200_000) == b"x" * 200_000
    assert link.is_up
    assert link.routes() == {"echo": port}


def test_cut_accepts_new_connections_and_never_answers(link: ServiceLink, echo_server: tuple[str, int]) -> None:
    port = link.add_route("echo", *echo_server)
    link.cut()
    assert not link.is_up
    with _connect(port) as sock:  # the TCP handshake still succeeds, as with a cut behind a router
        sock.sendall(b"ClientHello")
        with pytest.raises(TimeoutError):
            sock.recv(1)  # no data, no FIN (recv would return b""), no RST (would raise ConnectionResetError)


def test_cut_hangs_open_connections_without_reset(link: ServiceLink, echo_server: tuple[str, int]) -> None:
    port = link.add_route("echo", *echo_server)
    with _connect(port) as sock:
        assert _echo(sock, b"before") == b"before"
        link.cut()
        sock.sendall(b"during")
        with pytest.raises(TimeoutError):
            sock.recv(1)


def test_restore_makes_new_connections_work_and_closes_hung_ones(
    link: ServiceLink, echo_server: tuple[str, int]
) -> None:
    port = link.add_route("echo", *echo_server)
    hung = _connect(port)
    assert _echo(hung, b"before") == b"before"
    link.cut()
    held = _connect(port)
    _wait_for(lambda: link.connection_count() == (0, 2))
    link.restore()
    assert link.connection_count() == (0, 0)
    assert link.is_up
    with _connect(port) as fresh:
        assert _echo(fresh, b"after") == b"after"
    for sock in (hung, held):
        sock.settimeout(3)
        assert _closed_by_relay(sock)
        sock.close()


def test_route_names_are_unique_and_stopped_link_refuses_routes(
    link: ServiceLink, echo_server: tuple[str, int]
) -> None:
    link.add_route("echo", *echo_server)
    with pytest.raises(LinkError, match="exists already"):
        link.add_route("echo", *echo_server)
    link.stop()
    with pytest.raises(LinkError, match="stopped"):
        link.add_route("other", *echo_server)


def test_unreachable_target_closes_the_client(link: ServiceLink) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    port = link.add_route("dead", "127.0.0.1", dead_port)
    with _connect(port) as sock:
        sock.settimeout(5)
        assert _closed_by_relay(sock)
