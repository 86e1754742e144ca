"""CSRs are deleted after use whenever the identity making the request may (issue 9, case 10), on both
control-plane backends (on the real one, kube-apiserver's RBAC decides who may delete).

Deleting is never part of a renewal: a step that installs nothing deletes the CSRs of the issues before it,
as the installed certificate (``lifeline:breakglass``, which may), so also the bootstrap's (an IAM token,
``lifeline:agents``, may not delete). No lifeline CSR of this host is left behind, and a renewal step leaves
its CSR for the next step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lab.agentkit import agent_credentials, seeded_cluster, wait_for, write_config
from tests.conftest import Kubectl, both_backends, lab_of_backend

lab = pytest.fixture(name="lab")(lab_of_backend)


def lifeline_csrs(kubectl: Kubectl, admin: Path, host_id: str) -> list[str]:
    """The names of this host's CSRs, as the cluster's admin sees them with kubectl."""
    rc, out, err = kubectl(admin, "get", "csr", "-o", "name")
    assert rc == 0, err
    names = (line.removeprefix("certificatesigningrequest.certificates.k8s.io/") for line in out.split())
    return sorted(name for name in names if name.startswith(f"lifeline-{host_id}"))


@both_backends
def test_a_403_for_the_bootstrap_identity_does_not_stop_deletions_as_break_glass(
        lab: Any, tmp_path: Path, kubectl: Kubectl) -> None:
    from lifeline_agent.config import load_config
    from lifeline_agent.daemon import make_link_monitor
    from lifeline_agent.observability import ClusterState
    from lifeline_agent.reconcile import ClusterAgent

    cluster = seeded_cluster(lab, "csrs")
    lab.control_plane(cluster).set_signing_duration(30)
    admin = lab.admin_kubeconfig(cluster)  # every renewal deadline is already due: each step renews
    config = load_config(write_config(lab, tmp_path, [cluster]))
    with agent_credentials(lab):
        agent = ClusterAgent(config, cluster, make_link_monitor(config, None))
        agent.step()  # bootstrap with an IAM token: create, approve; the CSR is left for a later step
        assert agent.state is ClusterState.READY, agent.last_error
        left_by_bootstrap = lifeline_csrs(kubectl, admin, config.host_id)
        assert len(left_by_bootstrap) == 1, left_by_bootstrap

        renewed = agent.last_renewal
        agent.request_renewal("the test renews now")
        agent.step()  # renewal with the installed lifeline:breakglass certificate
        assert agent.state is ClusterState.READY, agent.last_error
        assert agent.last_renewal != renewed, "the second step did not renew"
        left = lifeline_csrs(kubectl, admin, config.host_id)
        assert len(left) == 2 and left_by_bootstrap[0] in left, left

        agent.step()  # nothing is due: this step deletes both, as the installed break-glass certificate
        assert agent.state is ClusterState.READY, agent.last_error
        assert lifeline_csrs(kubectl, admin, config.host_id) == []

        agent.request_renewal("the test renews now")
        agent.step()  # and the next renewal's CSR goes at the next step too
        agent.step()
        assert agent.state is ClusterState.READY, agent.last_error
        assert lifeline_csrs(kubectl, admin, config.host_id) == []


@both_backends
def test_the_daemon_deletes_what_its_steps_left_before_it_stops(lab: Any, tmp_path: Path, kubectl: Kubectl) -> None:
    from lifeline_agent.config import load_config
    from lifeline_agent.daemon import Daemon
    from lifeline_agent.observability import ClusterState, Observer, SystemdNotifier

    cluster = seeded_cluster(lab, "csrs")
    admin = lab.admin_kubeconfig(cluster)
    config = load_config(write_config(lab, tmp_path, [cluster]))
    with agent_credentials(lab):
        daemon = Daemon(config, Observer(), SystemdNotifier({}))

        def until_bootstrapped(_tick: float) -> bool:  # the main loop's wait: stop once the bootstrap is done
            wait_for(lambda: daemon.agents[cluster].state is ClusterState.READY, 60, "the bootstrap")
            assert len(lifeline_csrs(kubectl, admin, config.host_id)) == 1  # left by the bootstrap step
            daemon.stop()
            return True

        daemon.run(sleep=until_bootstrapped)
    assert lifeline_csrs(kubectl, admin, config.host_id) == []
