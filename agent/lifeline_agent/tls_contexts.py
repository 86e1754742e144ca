"""TLS client contexts, built once per (CA, client certificate, key) and reused, with their TLS sessions.

Building one costs a few milliseconds (the CA parsed, the key loaded from a file, because ``ssl`` cannot
load a key from memory), a tenth of a renewal on loopback. The context that verified a new kubeconfig is
the one its next renewal and its periodic checks use, so a small cache keeps nearly every lookup a hit.
The cache holds only what the process already holds in memory, and the key never touches the disk: it is
loaded from an anonymous in-memory file (``memfd_create``), closed at once.

Each context keeps the last TLS session ticket per server, so the next connection with the same
certificate resumes instead of doing the whole handshake again (the server still authenticates every
request with the certificate the session was made with, and refuses to resume one that has expired).
A new certificate always gets a new context, so the check of a new kubeconfig is a full handshake.
"""

from __future__ import annotations

import hashlib
import os
import ssl
import tempfile
import threading
from collections import OrderedDict

CACHE_SIZE = 128  # about 24 KiB each; two per cluster are in use at most (current and newly issued)


class ContextError(ValueError):
    """The CA data or the client certificate and key cannot make a TLS context."""


class ClientTls:
    """One context and the session tickets its connections were given, one per server address."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context
        self._sessions: dict[tuple[str, int, str], ssl.SSLSession] = {}

    def session_for(self, address: tuple[str, int, str]) -> ssl.SSLSession | None:
        return self._sessions.get(address)

    def remember(self, address: tuple[str, int, str], session: ssl.SSLSession | None) -> None:
        if session is not None and session.has_ticket:
            self._sessions[address] = session


_cache: OrderedDict[bytes, ClientTls] = OrderedDict()
_lock = threading.Lock()


def client_context(ca_pem: bytes, client_cert: tuple[bytes, bytes] | None) -> ClientTls:
    """A context that trusts only ``ca_pem`` and presents ``client_cert`` (certificate PEM, key PEM) if given."""
    digest = hashlib.sha256()
    for part in (ca_pem, *(client_cert or ())):
        digest.update(len(part).to_bytes(8, "big") + part)
    key = digest.digest()
    with _lock:
        context = _cache.get(key)
        if context is not None:
            _cache.move_to_end(key)
            return context
    context = ClientTls(_build(ca_pem, client_cert))
    with _lock:
        _cache[key] = context
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return context


def forget_all() -> None:
    """Drop every cached context (tests; an operator's key rotation needs nothing, the key is part of the key)."""
    with _lock:
        _cache.clear()


def _build(ca_pem: bytes, client_cert: tuple[bytes, bytes] | None) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(cadata=ca_pem.decode("ascii"))
        if client_cert is not None:
            _load_chain(context, *client_cert)
    except (ssl.SSLError, UnicodeDecodeError, ValueError) as exc:
        raise ContextError(f"the CA data or the client certificate is not usable: {exc}") from None
    context.set_alpn_protocols(["http/1.1"])
    return context


def _load_chain(context: ssl.SSLContext, cert_pem: bytes, key_pem: bytes) -> None:
    chain = cert_pem.rstrip(b"\n") + b"\n" + key_pem
    if not hasattr(os, "memfd_create"):  # a C library older than glibc 2.27: a private directory, removed at once
        with tempfile.TemporaryDirectory(prefix="lifeline-tls-") as directory:  # 0700
            path = os.path.join(directory, "client.pem")
            with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as handle:
                handle.write(chain)
            context.load_cert_chain(path)
        return
    fd = os.memfd_create("lifeline-client", os.MFD_CLOEXEC)  # private to this process, never on a disk
    try:
        os.write(fd, chain)
        context.load_cert_chain(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)
