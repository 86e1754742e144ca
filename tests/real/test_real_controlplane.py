"""The lab's real backend: a real kube-apiserver shows what an EKS local cluster shows, authenticates IAM
tokens through the lab webhook (STS through the service link), and its signer's rules are the real ones."""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from lifeline_agent.keys import make_csr

from lab.pki import new_private_key
from tests.conftest import Kubectl

UNAUTHORIZED = "error: You must be logged in to the server (Unauthorized)"
CONTROL_PLANE_TAINT = "node-role.eks-local.amazonaws.com/control-plane"

pytestmark = pytest.mark.xdist_group("real-lab")


def test_without_the_binaries_the_real_backend_is_a_named_error(tmp_path: Path) -> None:
    from lab.controlplane.real import RealControlPlaneUnavailable, find_binaries

    with pytest.raises(RealControlPlaneUnavailable, match="SHA256SUMS is missing"):
        find_binaries(source_dir=tmp_path / "no-shared", cache_dir=tmp_path / "bin")


def test_kubernetes_service_nodes_and_iam_through_the_webhook(
    real_lab: Any, kubectl: Kubectl, real_link_restored: Any, unique_name: str
) -> None:
    cluster = real_lab.create_local_cluster(unique_name)
    iam = real_lab.iam_kubeconfig(cluster.name)
    admin = real_lab.admin_kubeconfig(cluster.name)

    service = kubectl(iam, "get", "svc", "kubernetes", "-o", "json")
    assert service.rc == 0, service
    assert json.loads(service.stdout)["spec"]["clusterIP"] == "172.20.0.1"
    whoami = kubectl(iam, "auth", "whoami", "-o", "json")
    assert whoami.rc == 0, whoami
    assert "system:masters" in json.loads(whoami.stdout)["status"]["userInfo"]["groups"]  # the creator is admin

    nodes = json.loads(kubectl(admin, "get", "nodes", "-o", "json").stdout)["items"]
    tainted = [n for n in nodes if any(t["key"] == CONTROL_PLANE_TAINT for t in n["spec"].get("taints", []))]
    assert len(tainted) == 3

    real_link_restored.cut()
    time.sleep(1.1)  # the token is signed to the second: a new second gives one the webhook has not cached
    case2 = kubectl(iam, "get", "svc", timeout=90)
    assert case2.rc == 1 and UNAUTHORIZED in case2.stderr, case2
    case3 = kubectl(admin, "get", "svc")
    assert case3.rc == 0 and "172.20.0.1" in case3.stdout, case3


def test_signer_backdates_five_minutes_and_honours_expiration_seconds(
    real_lab: Any, kubectl: Kubectl, unique_name: str, tmp_path: Path
) -> None:
    cluster = real_lab.create_local_cluster(unique_name)
    admin = real_lab.admin_kubeconfig(cluster.name)
    csr_pem = make_csr(new_private_key("ec"), "someone", "some-group")
    manifest = {
        "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
        "metadata": {"name": "short"},
        "spec": {"request": base64.b64encode(csr_pem).decode(), "signerName": "kubernetes.io/kube-apiserver-client",
                 "usages": ["client auth"], "expirationSeconds": 600},
    }  # fmt: skip
    path = tmp_path / "csr.json"
    path.write_text(json.dumps(manifest))
    assert kubectl(admin, "create", "-f", str(path)).rc == 0
    asked = dt.datetime.now(dt.UTC)
    assert kubectl(admin, "certificate", "approve", "short").rc == 0
    issued = ""
    for _ in range(50):
        issued = kubectl(admin, "get", "csr", "short", "-o", "jsonpath={.status.certificate}").stdout
        if issued:
            break
    assert issued, "the real signer issued nothing"
    certificate = x509.load_pem_x509_certificate(base64.b64decode(issued))
    backdate = asked - certificate.not_valid_before_utc
    lifetime = certificate.not_valid_after_utc - asked
    assert dt.timedelta(minutes=4) < backdate <= dt.timedelta(minutes=5, seconds=30), backdate
    assert dt.timedelta(minutes=9) < lifetime <= dt.timedelta(minutes=10, seconds=30), lifetime
    columns = kubectl(admin, "get", "csr", "short").stdout.splitlines()[0].split()
    assert columns == ["NAME", "AGE", "SIGNERNAME", "REQUESTOR", "REQUESTEDDURATION", "CONDITION"]
