"""Clock skew of +-5 minutes between the host and the control plane's signer."""

from __future__ import annotations

import time

import pytest

from lab.agentkit import agent_credentials, check_kubeconfig, kubectl, write_config

SKEW = 300


@pytest.mark.parametrize("offset", [SKEW, -SKEW], ids=["control-plane-ahead", "control-plane-behind"])
def test_issue_and_offline_renewal_under_clock_skew(lab, cluster, tmp_path, link_restored, offset):
    from lifeline_agent.config import load_config
    from lifeline_agent.daemon import make_link_monitor
    from lifeline_agent.reconcile import ClusterAgent

    control_plane = lab.control_plane(cluster)
    control_plane.set_clock_offset(offset)
    control_plane.set_signing_duration(900)
    with agent_credentials(lab):
        config = load_config(write_config(lab, tmp_path, [cluster]))
        agent = ClusterAgent(config, cluster, make_link_monitor(config, None))
        agent.step()
        assert agent.state.value == "ready", agent.last_error
        kubeconfig = config.cluster_dir(cluster) / "kubeconfig"
        first = kubeconfig.read_bytes()
        assert kubectl(kubeconfig, "get", "svc", "kubernetes", "-n", "default").returncode == 0
        assert agent.next_renewal is not None and agent.not_after is not None
        assert time.time() < agent.next_renewal < agent.not_after  # a schedule, not a renewal storm
        agent.step()
        assert kubeconfig.read_bytes() == first

        # The host's clock passes the renewal deadline (a minute before notAfter): it renews with its own
        # certificate, link down.
        shift = agent.not_after - 60 - time.time()
        later = ClusterAgent(config, cluster, agent.link, clock=lambda: time.time() + shift)
        link_restored.cut()
        later.step()
        assert later.state.value == "ready", later.last_error
        assert kubeconfig.read_bytes() != first
        check_kubeconfig(kubeconfig.read_bytes())
        assert kubectl(kubeconfig, "get", "svc", "kubernetes", "-n", "default").returncode == 0
