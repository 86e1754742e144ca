"""Fixtures of the adversarial suite: a hostile TLS API server that is always stopped."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.adversarial.hostile_server import HostileApiServer


@pytest.fixture
def hostile() -> Iterator[HostileApiServer]:
    """A started :class:`HostileApiServer` in mode ``honest``; set ``hostile.mode`` in the test."""
    with HostileApiServer() as server:
        yield server
