"""Issue 9, case 1: whoever can write ``lifeline/<cluster>`` must not get the agent's credentials.

The attacker writes its own server's endpoint and CA into the secret (the lab Region is moto, so the
test can do what a principal with ``secretsmanager:PutSecretValue`` could). The agent follows an
endpoint or CA only when EKS ``DescribeCluster`` reports the same; the attacker's server (the hostile
TLS API server, which records every request and every failed handshake) must see nothing at all.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.agentkit import agent_credentials, read_status, run_once, write_config
from tests.adversarial.hostile_server import HostileApiServer

REFRESH = 1.0  # seconds between two reads of the secret, so that a step after a short sleep reads it again


@pytest.fixture
def cluster(lab: Any, unique_name: str) -> str:
    lab.create_local_cluster(unique_name)
    lab.seed_cluster_for_agent(unique_name)
    return unique_name


class Agent:
    """The ClusterAgent the CLI runs, in this process with the agent principal's credentials, step by step."""

    def __init__(self, lab: Any, directory: Path, cluster: str, refresh: float = REFRESH) -> None:
        from lifeline_agent.config import load_config
        from lifeline_agent.daemon import make_link_monitor

        self.cluster, self.refresh = cluster, refresh
        self.config_path = write_config(lab, directory, [cluster], timing={"secret_refresh_interval": refresh})
        self.config = load_config(self.config_path)
        self.link = make_link_monitor(self.config, None)
        self.directory = self.config.cluster_dir(cluster)
        self.kubeconfig = self.directory / "kubeconfig"
        self.cache = self.directory / "cluster.json"
        self.agent = self.new()

    def new(self, clock: Any = time.time) -> Any:
        from lifeline_agent.reconcile import ClusterAgent

        return ClusterAgent(self.config, self.cluster, self.link, clock=clock)

    def step(self, agent: Any = None) -> str:
        agent = agent or self.agent
        agent.step()
        return str(agent.state.value)

    def step_after_refresh(self) -> str:
        time.sleep(self.refresh + 0.1)
        return self.step()


@pytest.fixture
def agent(lab: Any, cluster: str, tmp_path: Path) -> Iterator[Agent]:
    with agent_credentials(lab):
        yield Agent(lab, tmp_path, cluster)


def current_secret(lab: Any, cluster: str) -> Any:
    from lifeline_agent.contract import ClusterSecret, secret_name

    value = lab.client("secretsmanager").get_secret_value(SecretId=secret_name(cluster))["SecretString"]
    return ClusterSecret.from_json(value)


def write_secret(lab: Any, cluster: str, *, endpoint: str, ca_pem: bytes) -> None:
    """What a principal allowed to write the secret can do: put any endpoint and CA in it."""
    from lifeline_agent.contract import ClusterSecret, secret_name

    document = current_secret(lab, cluster).to_dict() | {
        "endpoint": endpoint, "certificateAuthorityData": base64.b64encode(ca_pem).decode(),
        "caSha256": hashlib.sha256(ca_pem).hexdigest()}  # fmt: skip
    lab.client("secretsmanager").put_secret_value(SecretId=secret_name(cluster),
                                                  SecretString=ClusterSecret.from_dict(document).to_json())


def move_eks_endpoint(lab: Any, cluster: str, endpoint: str) -> None:
    """EKS itself reports another endpoint for the cluster (what a genuine move looks like from the Region)."""
    lab.region.eks_cluster(cluster).endpoint = endpoint


def assert_nothing_received(hostile: HostileApiServer) -> None:
    assert hostile.credentials_seen() == []
    assert hostile.requests == [], [(r.method, r.path) for r in hostile.requests]
    assert hostile.handshake_failures == []  # not even a TLS connection was attempted


def kubectl_works(kubectl: Any, kubeconfig: Path) -> None:
    rc, out, err = kubectl(kubeconfig, "get", "svc", "kubernetes", "-n", "default")
    assert rc == 0, err
    assert "kubernetes" in out


def server_of(kubeconfig: Path) -> dict[str, Any]:
    from lifeline_agent.kubeconfig import load_kubeconfig

    return dict(load_kubeconfig(kubeconfig.read_bytes())["clusters"][0]["cluster"])


def test_a_secret_pointing_at_an_attacker_gets_it_no_credential_and_the_kubeconfig_stays(
        lab, cluster, agent, hostile, kubectl, caplog):
    hostile.mode = "unauthorized"
    assert agent.step() == "ready", agent.agent.last_error
    good, trusted = agent.kubeconfig.read_bytes(), agent.cache.read_bytes()
    real = current_secret(lab, cluster)

    write_secret(lab, cluster, endpoint=hostile.url, ca_pem=hostile.ca_pem)
    with caplog.at_level(logging.WARNING, logger="lifeline_agent.trust"):
        for _ in range(3):
            assert agent.step_after_refresh() == "untrusted", agent.agent.last_error
    message = agent.agent.last_error
    assert "not confirmed by EKS DescribeCluster" in message
    assert f"endpoint {hostile.url} is not EKS's {real.endpoint}" in message
    assert hashlib.sha256(hostile.ca_pem).hexdigest() in message and real.ca_sha256 in message
    assert "CloudTrail PutSecretValue" in message
    warning = next(r for r in caplog.records if r.name == "lifeline_agent.trust")
    assert warning.levelno == logging.WARNING
    assert (warning.old_endpoint, warning.new_endpoint) == (real.endpoint, hostile.url)
    assert (warning.old_ca_sha256, warning.new_ca_sha256) == (real.ca_sha256, hashlib.sha256(hostile.ca_pem)
                                                              .hexdigest())
    assert read_status(agent.config.state_dir, cluster)["state"] == "untrusted"

    assert_nothing_received(hostile)
    assert agent.kubeconfig.read_bytes() == good
    assert agent.cache.read_bytes() == trusted
    kubectl_works(kubectl, agent.kubeconfig)

    # Renewal with the current certificate goes on meanwhile, against the trusted endpoint only.
    from lifeline_agent.keys import parse_certificate
    from lifeline_agent.kube import from_kubeconfig
    from lifeline_agent.kubeconfig import load_kubeconfig

    certificate = parse_certificate(from_kubeconfig(load_kubeconfig(good))[1].cert_pem)
    shift = certificate.not_before + 0.95 * (certificate.not_after - certificate.not_before) - time.time()
    later = agent.new(clock=lambda: time.time() + shift)
    assert agent.step(later) == "untrusted", later.last_error
    renewed = agent.kubeconfig.read_bytes()
    assert renewed != good and later.last_renewal is not None
    assert server_of(agent.kubeconfig)["server"] == server_of(agent.kubeconfig.with_name("kubeconfig.prev"))["server"]
    assert parse_certificate(from_kubeconfig(load_kubeconfig(renewed))[1].cert_pem).signed_by(real.ca_pem)
    assert agent.cache.read_bytes() == trusted
    assert_nothing_received(hostile)
    kubectl_works(kubectl, agent.kubeconfig)

    # The workflow writes the genuine secret again: the agent is ready again, still on the real cluster.
    write_secret(lab, cluster, endpoint=real.endpoint, ca_pem=real.ca_pem)
    assert agent.step_after_refresh() == "ready", agent.agent.last_error
    assert_nothing_received(hostile)


def test_the_same_attack_before_the_first_bootstrap_sends_nothing(lab, cluster, agent, hostile):
    hostile.mode = "unauthorized"
    write_secret(lab, cluster, endpoint=hostile.url, ca_pem=hostile.ca_pem)
    for _ in range(2):
        assert agent.step_after_refresh() == "untrusted", agent.agent.last_error
    assert "nothing was sent to " + hostile.url in agent.agent.last_error
    assert not agent.kubeconfig.exists() and not agent.cache.exists()

    once = run_once(lab, agent.config_path, timeout=120)  # the real CLI, as a separate process
    assert once.returncode != 0, once.stdout + once.stderr
    assert "untrusted" in once.stdout
    assert not agent.kubeconfig.exists() and not agent.cache.exists()
    assert_nothing_received(hostile)
    requests, _ = lab.control_plane(cluster).store.list("certificatesigningrequests")
    assert requests == []


def test_describe_cluster_refused_means_no_bootstrap_and_nothing_sent(lab, cluster, agent, monkeypatch):
    from moto.eks.exceptions import EKSError
    from moto.eks.models import EKSBackend

    class AccessDenied(EKSError):
        TYPE, STATUS = "AccessDeniedException", 403

    allowed = EKSBackend.describe_cluster

    def describe_cluster(self: Any, name: str) -> Any:
        if name == cluster:
            raise AccessDenied(message="User is not authorized to perform: eks:DescribeCluster")
        return allowed(self, name)

    monkeypatch.setattr(EKSBackend, "describe_cluster", describe_cluster)
    for _ in range(2):
        assert agent.step_after_refresh() == "failed", agent.agent.last_error
    assert "eks:DescribeCluster" in agent.agent.last_error and "AccessDeniedException" in agent.agent.last_error
    assert not agent.kubeconfig.exists() and not agent.cache.exists()
    requests, _ = lab.control_plane(cluster).store.list("certificatesigningrequests")
    assert requests == []  # not even the real cluster got a CSR: its endpoint was not confirmed

    monkeypatch.undo()
    assert agent.step_after_refresh() == "ready", agent.agent.last_error


def test_an_endpoint_change_confirmed_by_eks_is_followed(lab, cluster, agent, kubectl, caplog):
    # The lab's control plane has one listener and one serving certificate (for localhost and 127.0.0.1):
    # the new endpoint is that listener under its other name, which is what the kubeconfig then names.
    assert agent.step() == "ready", agent.agent.last_error
    assert server_of(agent.kubeconfig)["tls-server-name"] == "localhost"
    moved = f"https://127.0.0.1:{lab.control_plane(cluster).port}"
    move_eks_endpoint(lab, cluster, moved)
    write_secret(lab, cluster, endpoint=moved, ca_pem=lab.control_plane(cluster).ca_pem)

    with caplog.at_level(logging.WARNING, logger="lifeline_agent.trust"):
        assert agent.step_after_refresh() == "ready", agent.agent.last_error
    assert any("endpoint changed in the secret and EKS DescribeCluster confirms it" in r.getMessage()
               for r in caplog.records)  # fmt: skip
    assert server_of(agent.kubeconfig)["tls-server-name"] == "127.0.0.1"
    assert json.loads(agent.cache.read_text())["secret"]["endpoint"] == moved
    kubectl_works(kubectl, agent.kubeconfig)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_confirmed_endpoint_that_does_not_answer_leaves_cluster_json_and_the_kubeconfig(
        lab, cluster, tmp_path, kubectl):
    with agent_credentials(lab):
        confirmed_but_silent(lab, cluster, Agent(lab, tmp_path, cluster, refresh=10.0), kubectl)


def confirmed_but_silent(lab: Any, cluster: str, agent: Agent, kubectl: Any) -> None:
    assert agent.step() == "ready", agent.agent.last_error
    good, trusted = agent.kubeconfig.read_bytes(), agent.cache.read_bytes()
    silent = f"https://127.0.0.1:{free_port()}"  # EKS says so, but nothing listens there
    move_eks_endpoint(lab, cluster, silent)
    write_secret(lab, cluster, endpoint=silent, ca_pem=lab.control_plane(cluster).ca_pem)

    assert agent.step_after_refresh() == "renewing", agent.agent.last_error
    assert "Unreachable" in agent.agent.last_error
    assert agent.cache.read_bytes() == trusted
    assert agent.kubeconfig.read_bytes() == good
    kubectl_works(kubectl, agent.kubeconfig)
    # Until the secret is read again, the steps work on with the trusted endpoint.
    assert agent.step() == "ready", agent.agent.last_error
    assert agent.cache.read_bytes() == trusted
    assert agent.kubeconfig.read_bytes() == good
