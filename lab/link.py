"""The Outpost's service link: a TCP relay between the Outpost side and the Region that can be cut.

A cut looks like a fibre cut to a TLS client: new connections are accepted (the local end of the
relay answers the TCP handshake) but nothing ever comes back, and existing connections stop
forwarding in both directions without a reset or a FIN. Restoring makes new connections work again;
connections that hung during the cut are closed then.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
import time
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

POLL_SECONDS = 0.2
CONNECT_TIMEOUT_SECONDS = 5.0
BUFFER_BYTES = 65536


class LinkError(RuntimeError):
    """A route cannot be added or the link is not running."""


@dataclass(eq=False)
class _Relay:
    """One client connection and its upstream connection (``upstream`` is None when accepted while cut)."""

    client: socket.socket
    upstream: socket.socket | None
    severed: bool = False
    closed: bool = False
    directions_done: int = 0
    threads: list[threading.Thread] = field(default_factory=list)

    def close(self) -> None:
        self.closed = True
        for sock in (self.client, self.upstream):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()


@dataclass(eq=False)
class _Route:
    name: str
    target: tuple[str, int]
    listener: socket.socket
    thread: threading.Thread | None = None

    @property
    def listen_port(self) -> int:
        return int(self.listener.getsockname()[1])


class ServiceLink:
    """Routes named TCP relays through one link that can be cut and restored."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._up = True
        self._stopped = False
        self._routes: dict[str, _Route] = {}
        self._relays: set[_Relay] = set()
        self._history: list[tuple[float, bool]] = [(time.time(), True)]

    @property
    def is_up(self) -> bool:
        return self._up

    def history(self) -> list[tuple[float, bool]]:
        """(wall-clock time, up) for the link's creation and each cut or restore that changed its state, oldest
        first: what the Region's Outposts service sees of it (lab/region/outposts.py)."""
        with self._lock:
            return list(self._history)

    def routes(self) -> dict[str, int]:
        """Route name -> listen port."""
        with self._lock:
            return {name: route.listen_port for name, route in self._routes.items()}

    def connection_count(self) -> tuple[int, int]:
        """(open relayed connections, connections hung by a cut)."""
        with self._lock:
            hung = sum(1 for relay in self._relays if relay.severed)
            return len(self._relays) - hung, hung

    def add_route(self, name: str, target_host: str, target_port: int, listen_host: str = "127.0.0.1") -> int:
        """Relay connections to ``listen_host:<returned port>`` to ``target_host:target_port``."""
        with self._lock:
            if self._stopped:
                raise LinkError("the service link is stopped")
            if name in self._routes:
                raise LinkError(f"route {name!r} exists already")
            family = socket.AF_INET6 if ":" in listen_host else socket.AF_INET
            listener = socket.socket(family, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((listen_host, 0))
            listener.listen(128)
            route = _Route(name, (target_host, target_port), listener)
            route.thread = threading.Thread(target=self._accept_loop, args=(route,), name=f"link-{name}", daemon=True)
            self._routes[name] = route
        route.thread.start()
        return route.listen_port

    def remove_route(self, name: str) -> None:
        with self._lock:
            route = self._routes.pop(name, None)
        if route is not None:
            with contextlib.suppress(OSError):
                route.listener.close()

    def cut(self) -> None:
        """New connections hang unanswered; open ones stop forwarding (no RST, no FIN)."""
        with self._lock:
            if self._up:
                self._history.append((time.time(), False))
            self._up = False
            for relay in self._relays:
                relay.severed = True
        log.info("service link cut")

    def restore(self) -> None:
        """New connections work again; those that hung during the cut are closed."""
        with self._lock:
            if not self._up:
                self._history.append((time.time(), True))
            self._up = True
            hung = [relay for relay in self._relays if relay.severed]
            for relay in hung:
                self._relays.discard(relay)
        for relay in hung:
            relay.close()
        log.info("service link restored (%d hung connections closed)", len(hung))

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            routes = list(self._routes.values())
            self._routes.clear()
            relays = list(self._relays)
            self._relays.clear()
        for route in routes:
            with contextlib.suppress(OSError):
                route.listener.close()
        for relay in relays:
            relay.close()
        for route in routes:
            if route.thread is not None:
                route.thread.join(timeout=2)

    def _accept_loop(self, route: _Route) -> None:
        while True:
            try:
                readable, _, _ = select.select([route.listener], [], [], POLL_SECONDS)
                if not readable:
                    if route.listener.fileno() < 0:
                        return
                    continue
                client, _ = route.listener.accept()
            except (OSError, ValueError):
                return
            self._admit(route, client)

    def _admit(self, route: _Route, client: socket.socket) -> None:
        if not self._up:
            self._hold(client)
            return
        try:
            upstream = socket.create_connection(route.target, timeout=CONNECT_TIMEOUT_SECONDS)
        except OSError as exc:
            log.warning("link route %s: cannot reach %s:%d: %s", route.name, *route.target, exc)
            client.close()
            return
        upstream.settimeout(None)
        relay = _Relay(client, upstream)
        with self._lock:
            if not self._up:
                relay.severed = True
            self._relays.add(relay)
        for source, sink, direction in ((client, upstream, "up"), (upstream, client, "down")):
            thread = threading.Thread(
                target=self._pump, args=(relay, source, sink), name=f"link-{route.name}-{direction}", daemon=True
            )
            relay.threads.append(thread)
            thread.start()

    def _hold(self, client: socket.socket) -> None:
        """Accepted during a cut: keep it open, never read from it, close it on restore."""
        with self._lock:
            self._relays.add(_Relay(client, None, severed=True))

    def _pump(self, relay: _Relay, source: socket.socket, sink: socket.socket) -> None:
        while not relay.closed:
            if relay.severed:
                # Leave the bytes in the kernel buffers: the peer sees silence, not an error.
                threading.Event().wait(POLL_SECONDS)
                continue
            try:
                readable, _, _ = select.select([source], [], [], POLL_SECONDS)
                if not readable or relay.severed:
                    continue
                data = source.recv(BUFFER_BYTES)
                if not data:
                    with contextlib.suppress(OSError):
                        sink.shutdown(socket.SHUT_WR)
                    self._finish_direction(relay)
                    return
                sink.sendall(data)
            except (OSError, ValueError):
                self._drop(relay)
                return

    def _finish_direction(self, relay: _Relay) -> None:
        with self._lock:
            relay.directions_done += 1
            both_done = relay.directions_done == 2
        if both_done:
            self._drop(relay)

    def _drop(self, relay: _Relay) -> None:
        with self._lock:
            self._relays.discard(relay)
        relay.close()
