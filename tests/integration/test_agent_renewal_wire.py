"""What one renewal puts on the wire, on both control-plane backends: the requests of a real ``ClusterAgent``'s
steps in order, the TCP connections they open, and the link probes of a bootstrap; and what it writes to disk.

A renewal is, as the certificate it renews: create the CSR, approve it, read it until the certificate is there;
then, as the new certificate (TLS sends a client certificate per connection, so this is a connection of its
own): who am I, read the ``kubernetes`` service. One connection per credential (both servers keep connections
alive); no other request. The CSR is deleted later, in a step
that installs nothing, as the installed certificate.
"""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from lifeline_agent import kube, transport

from lab.agentkit import agent_credentials, write_config
from tests.conftest import Kubectl, both_backends, lab_of_backend

lab = pytest.fixture(name="lab")(lab_of_backend)

SSR = "/apis/authentication.k8s.io/v1/selfsubjectreviews"
SERVICE = "/api/v1/namespaces/default/services/kubernetes?resourceVersion=0"  # from the API server's cache


def fingerprint(credential: kube.Credential) -> str:
    return hashlib.sha256(credential.cert_pem or (credential.token or "").encode()).hexdigest()[:16]


@dataclass
class Wire:
    """Each request ``(credential, method, path)``; per credential, the connections opened; and the requests that
    opened a connection although their session had one the server had not closed."""

    requests: list[tuple[str, str, str]] = field(default_factory=list)
    connections: dict[str, int] = field(default_factory=dict)
    needless_connections: list[tuple[str, str, str]] = field(default_factory=list)
    resumed: dict[str, list[bool]] = field(default_factory=dict)  # per credential: each TLS handshake resumed?
    replaced: list[str] = field(default_factory=list)  # files renamed into place, anywhere below ``disk``
    fsyncs: int = 0
    disk: str = "/nowhere"
    _open: dict[int, bool] = field(default_factory=dict)  # id(session) -> its connection is still open
    _sessions: list[Any] = field(default_factory=list)  # kept alive: a freed session's id could be a new one's
    _opened = False

    def clear(self) -> None:
        self.requests.clear()
        self.connections.clear()
        self.needless_connections.clear()
        self.resumed.clear()
        self.replaced.clear()
        self.fsyncs = 0


@pytest.fixture
def wire(monkeypatch: pytest.MonkeyPatch) -> Iterator[Wire]:
    seen = Wire()
    request, connect = kube.KubeSession.request, transport.socket.create_connection

    def recorded_request(session: kube.KubeSession, method: str, path: str, body: Any = None) -> Any:
        who = fingerprint(session.credential)
        seen.requests.append((who, method, path))
        seen._sessions.append(session)
        seen._opened = False
        try:
            return request(session, method, path, body)
        finally:
            if seen._opened:
                seen.connections[who] = seen.connections.get(who, 0) + 1
                if seen._open.get(id(session)):
                    seen.needless_connections.append(seen.requests[-1])
            seen._open[id(session)] = session._connection._sock is not None  # not closed after this answer

    def counted_connect(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
        seen._opened = True
        return connect(address, *args, **kwargs)

    handshake = transport._handshake

    def noted_handshake(sock: Any, deadline: Any) -> None:
        handshake(sock, deadline)
        seen.resumed.setdefault(seen.requests[-1][0], []).append(sock.session_reused)

    replace, fsync = os.replace, os.fsync

    def recorded_replace(source: Any, target: Any) -> None:
        if str(target).startswith(seen.disk):
            seen.replaced.append(os.path.basename(target))
        replace(source, target)

    def counted_fsync(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}").startswith(seen.disk):
            seen.fsyncs += 1
        fsync(fd)

    monkeypatch.setattr(kube.KubeSession, "request", recorded_request)
    monkeypatch.setattr(transport.socket, "create_connection", counted_connect)
    monkeypatch.setattr(os, "replace", recorded_replace)
    monkeypatch.setattr(transport, "_handshake", noted_handshake)
    monkeypatch.setattr(os, "fsync", counted_fsync)
    yield seen


def lifeline_csrs(kubectl: Kubectl, admin: Path) -> list[str]:
    rc, out, err = kubectl(admin, "get", "csr", "-o", "name")
    assert rc == 0, err
    return sorted(line.rsplit("/", 1)[1] for line in out.split() if "/lifeline-" in line)


@both_backends
def test_a_renewal_step_asks_only_what_it_needs_over_one_connection_per_certificate(
        lab: Any, backend: str, tmp_path: Path, kubectl: Kubectl, wire: Wire, unique_name: str) -> None:
    from lifeline_agent.config import load_config
    from lifeline_agent.link import LinkMonitor, probe_region
    from lifeline_agent.observability import ClusterState
    from lifeline_agent.reconcile import ClusterAgent

    lab.create_local_cluster(unique_name)
    lab.seed_cluster_for_agent(unique_name)
    admin = lab.admin_kubeconfig(unique_name)
    config = load_config(write_config(lab, tmp_path, [unique_name]))
    probes: list[bool] = []

    def probe() -> bool:  # the daemon's probe, counted
        probes.append(probe_region(region=config.region, endpoint_url=config.aws_endpoint_url,
                                   timeout=config.probe_timeout))  # fmt: skip
        return probes[-1]

    with agent_credentials(lab):
        link = LinkMonitor(probe, config.probe_interval)
        agent = ClusterAgent(config, unique_name, link)
        agent.step()  # bootstrap with an IAM token
        assert agent.state is ClusterState.READY, agent.last_error
        assert probes == [True]  # the step's one probe of the link, not a second one before the IAM token
        old = fingerprint(kube.from_kubeconfig(agent.store.current() or {})[1])

        wire.clear()
        wire.disk = str(config.state_dir)
        agent.request_renewal("the test renews now")
        agent.step()
        assert agent.state is ClusterState.READY, agent.last_error
    new = fingerprint(kube.from_kubeconfig(agent.store.current() or {})[1])
    assert new != old
    created = wire.requests[0][2]
    assert wire.requests[0] == (old, "POST", kube.CSR_PATH)
    csr = [path for _, method, path in wire.requests if method == "PUT"]
    assert len(csr) == 1 and csr[0].startswith(kube.CSR_PATH + "/") and csr[0].endswith("/approval")
    name = csr[0][len(kube.CSR_PATH) + 1 : -len("/approval")]
    polls = [request for request in wire.requests[2:] if request == (old, "GET", f"{kube.CSR_PATH}/{name}")]
    assert polls, wire.requests
    assert wire.requests == [(old, "POST", created), (old, "PUT", csr[0]), *polls, (new, "POST", SSR),
                             (new, "GET", SERVICE)], wire.requests  # fmt: skip
    assert wire.needless_connections == []  # a new connection only where the server closed the last one
    assert wire.resumed[old][0] and not wire.resumed[new][0]  # the old certificate's session resumes (its ticket
    # came with its own check in the last step); the new certificate's check is a full handshake
    assert wire.connections == {old: 1, new: 1}, wire.connections  # one for the CSR, one to verify
    assert name in lifeline_csrs(kubectl, admin)  # deleting it is not part of the renewal
    assert wire.replaced == ["kubeconfig.prev", "kubeconfig", "key.pem", "status.json"]  # each file once
    assert wire.fsyncs == 3  # the new kubeconfig and key, then their directory (status.json need not last)

    wire.clear()
    agent.step()  # a step that installs nothing deletes the CSRs of the last two issues, as the installed identity
    assert agent.state is ClusterState.READY, agent.last_error
    deletes = [request for request in wire.requests if request[1] == "DELETE"]
    assert len(deletes) == 2 and {who for who, _, _ in deletes} == {new}, wire.requests
    assert lifeline_csrs(kubectl, admin) == []
    assert wire.resumed[new] and all(wire.resumed[new])  # with the ticket of the check (one per connection)

    wire.clear()
    with agent_credentials(lab):
        agent.request_renewal("the test renews again")
        agent.step()
    assert agent.state is ClusterState.READY, agent.last_error
    assert wire.resumed[new][0]  # the same ticket a third time: the servers take a ticket more than once
