"""The fleet pass: the real ``lifeline-agent once`` and ``run`` with several lab clusters at once (issue 11).

One pass bootstraps every cluster, at most ``max_concurrent_clusters`` at a time. A cluster whose API server
hangs (a listening socket that never answers the TLS handshake: the kernel completes the TCP handshake from
its backlog, nothing ever reads) holds up only itself: the others are ready while its request is still
waiting for its deadline, and it ends ``failed``, named in the output.
"""

from __future__ import annotations

import json
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lifeline_agent.kubeconfig import build_kubeconfig, dump_kubeconfig

from lab import agentkit
from lab.agentkit import AGENT, AgentProcess, NotifySocket, read_status, seeded_cluster, write_config

HUNG_API_TIMEOUT = 10  # seconds: the hung cluster's request waits this long; the others must be done before


@pytest.fixture(scope="module")
def fleet(lab: Any) -> list[str]:
    return sorted(seeded_cluster(lab, "fleet") for _ in range(4))


@pytest.fixture
def hung_server() -> Iterator[str]:
    """``https://127.0.0.1:<port>`` of a socket that listens and never accepts."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=16)
    try:
        yield f"https://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()


def hung_cluster_table(lab: Any, tmp_path: Path, server: str, ca_from: str) -> dict[str, str]:
    """A Region-less cluster at ``server`` (any valid CA; the handshake never gets that far)."""
    control_plane = lab.control_plane(ca_from)
    ca_pem = control_plane.ca_pem
    cert, key = control_plane.ca.issue_client_cert("bootstrap:hung", ["lifeline:agents"])
    bootstrap = tmp_path / "hung-bootstrap.kubeconfig"
    bootstrap.write_bytes(dump_kubeconfig(build_kubeconfig(cluster_name="hung", server=server, ca_pem=ca_pem,
                                                           user_name="bootstrap", client_cert_pem=cert,
                                                           client_key_pem=key)))  # fmt: skip
    bootstrap.chmod(0o600)
    return {"endpoint": server, "certificate_authority_data": ca_pem.decode(), "bootstrap_kubeconfig": str(bootstrap)}


def records(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def table(stdout: str) -> list[list[str]]:
    return [line.split() for line in stdout.splitlines()[1:] if line.strip()]


def most_at_once(logged: list[dict[str, Any]]) -> int:
    """The most clusters between "issuing a new certificate" and "installed a new kubeconfig", in log order."""
    running: set[str] = set()
    most = 0
    for record in logged:
        if record.get("message", "").startswith("issuing a new certificate"):
            running.add(record["cluster"])
        elif record.get("message") == agentkit.RENEWED:
            running.discard(record["cluster"])
        most = max(most, len(running))
    return most


def test_one_once_pass_bootstraps_every_cluster_at_most_the_bound_at_once(lab, fleet, tmp_path, kubectl):
    config = write_config(lab, tmp_path, fleet, max_concurrent_clusters=3)

    result = agentkit.run_once(lab, config, timeout=180)

    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    rows = table(result.stdout)
    assert [row[0] for row in rows] == fleet, result.stdout  # sorted by cluster, every one of them
    assert {row[1] for row in rows} == {"ready"}, result.stdout
    logged = records(result.stderr)
    assert sum(r.get("message") == agentkit.RENEWED for r in logged) == len(fleet)
    assert 2 <= most_at_once(logged) <= 3, [(r.get("cluster"), r.get("message")) for r in logged]
    for name in fleet:
        rc, out, err = kubectl(tmp_path / "state" / name / "kubeconfig", "get", "svc", "kubernetes", "-o", "name")
        assert (rc, out.strip()) == (0, "service/kubernetes"), err


def test_a_hung_api_server_holds_up_only_its_own_cluster(lab, fleet, tmp_path, hung_server):
    hung = f"a-hung-{uuid.uuid4().hex[:6]}"  # sorts first: the first cluster the pass starts
    config = write_config(lab, tmp_path, [*fleet, hung], max_concurrent_clusters=2,
                          timing={"api_timeout": HUNG_API_TIMEOUT},
                          cluster={hung: hung_cluster_table(lab, tmp_path, hung_server, fleet[0])})  # fmt: skip
    state = tmp_path / "state"
    process = subprocess.Popen([str(AGENT), "once", "--config", str(config)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=agentkit.agent_env(lab))  # fmt: skip
    try:
        agentkit.wait_for(lambda: all(read_status(state, c).get("state") == "ready" for c in fleet), 60,
                          "the other clusters ready", interval=0.1)  # fmt: skip
        hung_state = read_status(state, hung).get("state")
        still_running = process.poll() is None
        stdout, stderr = process.communicate(timeout=HUNG_API_TIMEOUT * 6)
    finally:
        process.kill()
        process.wait()

    assert hung_state != "failed" and still_running, "the others waited for the hung cluster's step"
    assert process.returncode == 1, stdout + stderr[-3000:]
    rows = table(stdout)
    assert [row[0] for row in rows] == sorted([*fleet, hung]), stdout
    assert [row[1] for row in rows] == ["failed"] + ["ready"] * len(fleet), stdout
    hung_row = next(line for line in stdout.splitlines() if line.startswith(hung))
    assert "Timeout" in hung_row and hung_server.removeprefix("https://") in hung_row, hung_row
    logged = records(stderr)
    installed = [i for i, r in enumerate(logged) if r.get("message") == agentkit.RENEWED]
    hung_failed = [i for i, r in enumerate(logged) if r.get("cluster") == hung and r.get("state") == "failed"]
    assert len(installed) == len(fleet) and len(hung_failed) == 1, [r.get("message") for r in logged]
    assert max(installed) < hung_failed[0], "a cluster was installed only after the hung cluster's step ended"


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifySocket]:
    listener = NotifySocket(tmp_path / "notify.sock")
    yield listener
    listener.close()


def test_the_daemon_first_pass_is_bounded_but_a_hung_cluster_holds_up_only_itself(lab, fleet, tmp_path, hung_server,
                                                                                  notify):  # fmt: skip
    hung = f"a-hung-{uuid.uuid4().hex[:6]}"
    config = write_config(lab, tmp_path, [*fleet, hung], max_concurrent_clusters=2,
                          timing={"api_timeout": HUNG_API_TIMEOUT},
                          cluster={hung: hung_cluster_table(lab, tmp_path, hung_server, fleet[0])})  # fmt: skip
    state = tmp_path / "state"
    agent = AgentProcess(lab, config, tmp_path / "agent.log", notify=notify)
    try:
        agentkit.wait_for(lambda: all(read_status(state, c).get("state") == "ready" for c in fleet), 60,
                          "the other clusters ready", interval=0.1)  # fmt: skip
        agentkit.wait_for(lambda: read_status(state, hung).get("state") == "failed", HUNG_API_TIMEOUT * 6,
                          "the hung cluster failed")  # fmt: skip
        hung_error = read_status(state, hung).get("last_error") or ""
        assert agent.alive()
    finally:
        agent.stop()

    assert "Timeout" in hung_error, hung_error
    ready = [m for _, m in notify.messages if "READY=1" in m.splitlines()]
    assert len(ready) == 1 and "pending" in ready[0] and " ready" not in ready[0], ready  # READY=1 before bootstraps
    logged = agent.records()
    assert not [r for r in logged if r.get("message") == "unexpected error in the reconcile loop"]
    installed = [i for i, r in enumerate(logged) if r.get("message") == agentkit.RENEWED]
    hung_failed = [i for i, r in enumerate(logged) if r.get("cluster") == hung and r.get("state") == "failed"]
    assert len(installed) == len(fleet) and hung_failed, [r.get("message") for r in logged]
    assert max(installed) < hung_failed[0], "a cluster's first step waited for the hung cluster's first step"
    assert 1 <= most_at_once(logged) <= 2, [(r.get("cluster"), r.get("message")) for r in logged]
