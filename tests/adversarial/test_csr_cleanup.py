"""CSRs are deleted after use whenever the identity making the request may (issue 9, case 10), on both
control-plane backends (on the real one, kube-apiserver's RBAC decides who may delete).

Against the lab: the bootstrap identity (an IAM token, ``lifeline:agents``) may not delete CSRs, so its
CSR stays; the next renewal, made with the agent's own ``lifeline:breakglass`` certificate, deletes its
own CSR and the one the bootstrap had to leave: no lifeline CSR of this host is left behind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lab.agentkit import agent_credentials, seeded_cluster, write_config
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
        agent.step()  # bootstrap with an IAM token: create, approve, delete -> 403
        assert agent.state is ClusterState.READY, agent.last_error
        left_by_bootstrap = lifeline_csrs(kubectl, admin, config.host_id)
        assert len(left_by_bootstrap) == 1, left_by_bootstrap

        renewed = agent.last_renewal
        agent.request_renewal("the test renews now")
        agent.step()  # renewal with the installed lifeline:breakglass certificate, which may delete
        assert agent.state is ClusterState.READY, agent.last_error
        assert agent.last_renewal != renewed, "the second step did not renew"
        assert lifeline_csrs(kubectl, admin, config.host_id) == []

        agent.request_renewal("the test renews now")
        agent.step()  # and the next renewal again
        assert agent.state is ClusterState.READY, agent.last_error
        assert lifeline_csrs(kubectl, admin, config.host_id) == []
