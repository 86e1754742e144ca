"""A fault at each step of a renewal: the installed kubeconfig keeps working and the agent recovers by itself.

In-process agent (one per module, 30 s certificates so every step renews) for the API-server faults;
real ``lifeline-agent run`` processes for SIGKILL; a small tmpfs for a full disk and a read-only state.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.faults import RENEWAL_STEPS, StepHook, leftovers, server_error, stall
from lab.agentkit import agent_credentials, check_kubeconfig, kubectl, seeded_cluster, write_config

API_TIMEOUT = 2


class InProcessAgent:
    def __init__(self, lab: Any, directory: Path, cluster: str) -> None:
        from lifeline_agent.config import load_config
        from lifeline_agent.daemon import make_link_monitor
        from lifeline_agent.reconcile import ClusterAgent

        self.cluster = cluster
        self.config = load_config(write_config(lab, directory, [cluster], timing={"api_timeout": API_TIMEOUT}))
        self.agent = ClusterAgent(self.config, cluster, make_link_monitor(self.config, None))
        self.kubeconfig = self.config.cluster_dir(cluster) / "kubeconfig"

    def step(self) -> Any:
        self.agent.request_renewal("the test renews at every step")  # kept until a renewal succeeds
        self.agent.step()
        return self.agent.state


def assert_works(kubeconfig: Path) -> None:
    check_kubeconfig(kubeconfig.read_bytes())
    result = kubectl(kubeconfig, "get", "svc", "kubernetes", "-n", "default", timeout=30)
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def renewing(lab: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessAgent]:
    from lifeline_agent.observability import ClusterState

    cluster = seeded_cluster(lab, "faults")
    lab.control_plane(cluster).set_signing_duration(30)
    with agent_credentials(lab):
        agent = InProcessAgent(lab, tmp_path_factory.mktemp("faults"), cluster)
        assert agent.step() is ClusterState.READY
        yield agent


@pytest.mark.xdist_group("faults")
@pytest.mark.parametrize("step", RENEWAL_STEPS, ids=lambda s: s.name)
@pytest.mark.parametrize("fault", ["api-500", "stalled-connection"])
def test_api_fault_keeps_the_installed_kubeconfig_and_the_next_step_recovers(lab, renewing, step, fault):
    from lifeline_agent.observability import ClusterState

    before = renewing.kubeconfig.read_bytes()
    action = server_error if fault == "api-500" else stall(API_TIMEOUT + 1.5)
    with StepHook(lab.control_plane(renewing.cluster), step, action) as hook:
        state = renewing.step()
    assert hook.fired.is_set(), f"no renewal reached {step.name}"
    assert state is ClusterState.RENEWING, renewing.agent.last_error  # still serving with the old certificate
    assert renewing.agent.last_error
    assert renewing.kubeconfig.read_bytes() == before
    assert_works(renewing.kubeconfig)

    assert renewing.step() is ClusterState.READY, renewing.agent.last_error
    assert renewing.kubeconfig.read_bytes() != before  # renewed without help
    assert_works(renewing.kubeconfig)
    assert leftovers(renewing.kubeconfig.parent) == []


@pytest.mark.xdist_group("faults")
@pytest.mark.parametrize("step", RENEWAL_STEPS, ids=lambda s: s.name)
def test_link_cut_at_a_renewal_step_does_not_stop_the_renewal(lab, renewing, step, link_restored):
    from lifeline_agent.observability import ClusterState

    before = renewing.kubeconfig.read_bytes()
    with StepHook(lab.control_plane(renewing.cluster), step, lambda _request: link_restored.cut()) as hook:
        state = renewing.step()
    assert hook.fired.is_set()
    assert state is ClusterState.READY, renewing.agent.last_error  # renewal needs the cluster, not the Region
    assert renewing.kubeconfig.read_bytes() != before
    assert_works(renewing.kubeconfig)
