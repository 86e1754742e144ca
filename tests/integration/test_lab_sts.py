"""EKS IAM tokens against a lab control plane with real kubectl: STS (through the link) rejects a token
made for another cluster and an expired one, and maps a valid one through aws-auth."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import botocore.auth
import pytest
from lifeline_agent import eks_token
from lifeline_agent.kubeconfig import ExecPlugin, atomic_write, build_kubeconfig, dump_kubeconfig

# kubectl words a 401 on its first (discovery) request differently from a 401 on a cached-discovery call.
UNAUTHORIZED = (
    "error: You must be logged in to the server (Unauthorized)",
    "error: You must be logged in to the server (the server has asked for the client to provide credentials)",
)


def _unauthorized(result: Any) -> bool:
    return bool(result.rc == 1 and any(message in result.stderr for message in UNAUTHORIZED))


@pytest.fixture(scope="module")
def cluster(lab: Any) -> Any:
    name = "sts-acceptance"
    info = lab.create_local_cluster(name)
    lab.seed_cluster_for_agent(name)
    return info


def _static_token_kubeconfig(lab: Any, cluster: Any, token: eks_token.EksToken, path: Path) -> Path:
    """A kubeconfig whose exec plugin prints one fixed ExecCredential (a token made beforehand)."""
    credential = path.with_suffix(".json")
    credential.write_text(token.exec_credential_json())
    config = build_kubeconfig(
        cluster_name=cluster.name,
        server=cluster.endpoint,
        ca_pem=cluster.ca_pem,
        user_name="static",
        exec_plugin=ExecPlugin(command="/bin/cat", args=(str(credential),)),
    )
    atomic_write(path, dump_kubeconfig(config))
    return path


def test_valid_token_of_the_creator_is_admin(lab: Any, cluster: Any, kubectl: Any) -> None:
    result = kubectl(lab.iam_kubeconfig(cluster.name), "get", "svc", "kubernetes")
    assert result.rc == 0 and "kubernetes" in result.stdout, result


def test_valid_token_of_the_agent_maps_through_aws_auth(lab: Any, cluster: Any, kubectl: Any) -> None:
    kubeconfig = lab.iam_kubeconfig(cluster.name, principal=lab.agent_principal)
    allowed = kubectl(kubeconfig, "auth", "can-i", "create", "certificatesigningrequests")
    assert allowed.rc == 0 and allowed.stdout.strip() == "yes", allowed
    denied = kubectl(kubeconfig, "get", "secrets", "-A")
    assert denied.rc == 1 and "Forbidden" in denied.stderr and "lifeline-agent:" in denied.stderr, denied


def test_token_for_another_cluster_is_unauthorized(lab: Any, cluster: Any, kubectl: Any) -> None:
    kubeconfig = lab.iam_kubeconfig(cluster.name, token_cluster_id="some-other-cluster")
    result = kubectl(kubeconfig, "get", "svc")
    assert _unauthorized(result), result


def test_expired_token_is_unauthorized(
    lab: Any, cluster: Any, kubectl: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    two_minutes_ago = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(minutes=2)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: two_minutes_ago)
    token = eks_token.get_token(
        cluster.name, session=lab.boto3_session(), region="us-west-2", endpoint_url=lab.outpost_region_url
    )
    monkeypatch.undo()
    result = kubectl(_static_token_kubeconfig(lab, cluster, token, tmp_path / "expired.yaml"), "get", "svc")
    assert _unauthorized(result), result


def test_fresh_static_token_works_so_the_expired_case_is_about_time(
    lab: Any, cluster: Any, kubectl: Any, tmp_path: Path
) -> None:
    token = eks_token.get_token(
        cluster.name, session=lab.boto3_session(), region="us-west-2", endpoint_url=lab.outpost_region_url
    )
    result = kubectl(_static_token_kubeconfig(lab, cluster, token, tmp_path / "fresh.yaml"), "get", "svc")
    assert result.rc == 0, result
