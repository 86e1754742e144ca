"""Corrupted files in the state directory: a named error, recovery when possible, never a crash loop."""

from __future__ import annotations

import base64
import datetime as dt
import time
from pathlib import Path
from typing import Any

import pytest

from lab.agentkit import agent_credentials, check_kubeconfig, kubectl, run_once, write_config


class Bootstrapped:
    """An in-process agent with a verified kubeconfig in its own state directory."""

    def __init__(self, lab: Any, directory: Path, cluster: str) -> None:
        from lifeline_agent.config import load_config
        from lifeline_agent.daemon import make_link_monitor
        from lifeline_agent.reconcile import ClusterAgent

        self.lab, self.cluster = lab, cluster
        self.config_path = write_config(lab, directory, [cluster], probe_interval="1s")
        self.config = load_config(self.config_path)
        self.agent = ClusterAgent(self.config, cluster, make_link_monitor(self.config, None))
        self.directory = self.config.cluster_dir(cluster)
        self.kubeconfig = self.directory / "kubeconfig"
        assert self.step() == "ready", self.agent.last_error
        self.good = self.kubeconfig.read_bytes()

    def step(self) -> str:
        self.delay = self.agent.step()  # never raises: a crash here would be a crash loop under systemd
        return self.agent.state.value


@pytest.fixture
def state(lab: Any, cluster: str, tmp_path: Path) -> Any:
    with agent_credentials(lab):
        yield Bootstrapped(lab, tmp_path, cluster)


def works(kubeconfig: Path) -> bool:
    check_kubeconfig(kubeconfig.read_bytes())
    return kubectl(kubeconfig, "get", "svc", "kubernetes", "-n", "default", timeout=30).returncode == 0


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_truncated_kubeconfig_without_link_or_previous_generation_is_a_named_needs_link(lab, state,
                                                                                         link_restored):
    truncate(state.kubeconfig)
    link_restored.cut()
    for _ in range(2):
        assert state.step() == "needs-link", state.agent.last_error
        assert "service link" in state.agent.last_error
        assert state.delay > 0  # waits for the link, no tight loop
    once = run_once(lab, state.config_path)
    assert once.returncode == 3, once.stdout + once.stderr  # EXIT_NEEDS_LINK, with the reason in the table
    assert "needs-link" in once.stdout and "Traceback" not in once.stderr
    assert "installed kubeconfig unusable" in once.stderr  # the warning names the problem

    link_restored.restore()
    state.agent.link.is_up(fresh=True)
    assert state.step() == "ready", state.agent.last_error  # re-issued through the Region
    assert works(state.kubeconfig)


def test_truncated_kubeconfig_falls_back_to_the_previous_generation_offline(lab, state, link_restored):
    assert renewed_with_a_later_clock(state) == "ready"  # now there is a kubeconfig.prev (the first one)
    truncate(state.kubeconfig)
    link_restored.cut()
    state.step()
    assert state.agent.state.value in ("ready", "renewing"), state.agent.last_error
    assert state.kubeconfig.read_bytes() == state.good  # the previous generation, still valid, is back
    assert works(state.kubeconfig)


def test_garbage_cache_without_link_is_a_named_error_and_the_kubeconfig_keeps_working(lab, state, link_restored):
    (state.directory / "cluster.json").write_bytes(b"{garbage")
    link_restored.cut()
    state.agent.link.is_up(fresh=True)
    assert state.step() in ("renewing", "failed")
    assert "cluster.json" in state.agent.last_error and "StoreError" in state.agent.last_error
    assert state.delay > 0
    assert state.kubeconfig.read_bytes() == state.good and works(state.kubeconfig)

    link_restored.restore()
    state.agent.link.is_up(fresh=True)
    assert state.step() == "ready", state.agent.last_error  # fetched again from the Region
    from lifeline_agent.store import ClusterStore

    assert ClusterStore(state.directory).load_cache() is not None


def test_garbage_key_file_does_not_break_the_kubeconfig_and_the_next_renewal_rewrites_it(lab, state):
    from cryptography.hazmat.primitives import serialization

    (state.directory / "key.pem").write_bytes(b"-----BEGIN " b"PRIVATE KEY-----\ngarbage\n")
    assert state.step() == "ready", state.agent.last_error
    assert works(state.kubeconfig)
    assert renewed_with_a_later_clock(state) == "ready"
    serialization.load_pem_private_key((state.directory / "key.pem").read_bytes(), None)
    assert state.kubeconfig.read_bytes() != state.good and works(state.kubeconfig)


def renewed_with_a_later_clock(state: Any) -> str:
    """One step of an agent whose clock reached the renewal deadline (a minute before notAfter)."""
    from lifeline_agent.reconcile import ClusterAgent

    assert state.agent.not_after is not None
    shift = state.agent.not_after - 60 - time.time()
    later = ClusterAgent(state.config, state.cluster, state.agent.link, clock=lambda: time.time() + shift)
    later.step()
    return later.state.value


def install_foreign_certificate(state: Any) -> bytes:
    """A kubeconfig whose client certificate (and key) come from a CA that is not the cluster's."""
    from lifeline_agent.kubeconfig import build_kubeconfig, dump_kubeconfig, load_kubeconfig

    from lab.pki import ClusterCA

    cluster = load_kubeconfig(state.good)["clusters"][0]["cluster"]
    cert, key = ClusterCA.create("not-the-cluster-ca").issue_client_cert(
        state.config.user_name, [state.config.group_for(None)], dt.timedelta(hours=1))
    config = build_kubeconfig(cluster_name=state.cluster, server=cluster["server"],
                              ca_pem=base64.b64decode(cluster["certificate-authority-data"]),
                              user_name=state.config.user_name, client_cert_pem=cert, client_key_pem=key,
                              tls_server_name=cluster.get("tls-server-name"))  # fmt: skip
    data = dump_kubeconfig(config)
    state.kubeconfig.write_bytes(data)
    return data


def test_wrong_ca_certificate_needs_the_link_then_is_replaced(lab, state, link_restored):
    foreign = install_foreign_certificate(state)
    link_restored.cut()
    assert state.step() == "needs-link", state.agent.last_error
    assert "not issued by the cluster CA" in state.agent.last_error
    assert state.kubeconfig.read_bytes() == foreign  # nothing replaced without a proven successor

    link_restored.restore()
    state.agent.link.is_up(fresh=True)
    assert state.step() == "ready", state.agent.last_error
    assert works(state.kubeconfig)
