"""DESIGN §1's manual procedure, run verbatim with real kubectl and openssl against the lab control plane."""

from __future__ import annotations

import base64
import datetime as dt
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from lifeline_agent.kubeconfig import build_kubeconfig, dump_kubeconfig

from lab.controlplane import ControlPlane, ControlPlaneOptions
from tests.conftest import REAL_BACKEND

CSR_YAML = """apiVersion: certificates.k8s.io/v1
kind: CertificateSigningRequest
metadata:
  name: admin-csr
spec:
  request: {request}
  signerName: kubernetes.io/kube-apiserver-client
  usages:
  - client auth
"""


@pytest.fixture(scope="module", params=["emulated", REAL_BACKEND])
def control_plane(request: pytest.FixtureRequest) -> Iterator[ControlPlane]:
    options = ControlPlaneOptions(cluster_name="manual", cluster_id=str(uuid.uuid4()))
    if request.param == "emulated":
        with ControlPlane(options) as cp:
            yield cp
        return
    from lab.controlplane.real import RealControlPlane, unavailable_reason

    if (reason := unavailable_reason()) is not None:
        pytest.skip(f"real control plane unavailable: {reason}")
    with RealControlPlane(options) as real:
        yield real


@pytest.fixture
def admin_kubeconfig(control_plane: ControlPlane, tmp_path: Path) -> Path:
    cert_pem, key_pem = control_plane.admin_credentials()
    config = build_kubeconfig(
        cluster_name="manual", server=control_plane.endpoint, ca_pem=control_plane.ca_pem,
        user_name="lab-admin", client_cert_pem=cert_pem, client_key_pem=key_pem,
    )
    path = tmp_path / "lab-admin.kubeconfig"
    path.write_bytes(dump_kubeconfig(config))
    return path


def shell(command: str, cwd: Path, kubeconfig: Path | None = None) -> str:
    """Run one step of the procedure as an operator types it; fail with its output if it fails."""
    env_prefix = f"export KUBECONFIG={kubeconfig}; " if kubeconfig else "unset KUBECONFIG; "
    kubectl_dir = Path(".venv/bin").resolve()
    completed = subprocess.run(
        ["bash", "-c", f"export PATH={kubectl_dir}:$PATH; {env_prefix}{command}"],
        cwd=cwd, capture_output=True, text=True, timeout=60, check=False,
    )
    assert completed.returncode == 0, f"{command}\nstdout: {completed.stdout}\nstderr: {completed.stderr}"
    return completed.stdout


def test_manual_procedure_gives_a_working_offline_kubeconfig(
    control_plane: ControlPlane, admin_kubeconfig: Path, tmp_path: Path
) -> None:
    work = tmp_path
    shell('openssl req -new -newkey rsa:4096 -nodes -days 365 -keyout admin.key -out admin.csr -subj "/CN=admin"',
          work)
    request = base64.b64encode((work / "admin.csr").read_bytes()).decode()
    (work / "csr.yaml").write_text(CSR_YAML.format(request=request))

    created = shell("kubectl create -f csr.yaml", work, admin_kubeconfig)
    assert "certificatesigningrequest.certificates.k8s.io/admin-csr created" in created
    approved = shell("kubectl certificate approve admin-csr", work, admin_kubeconfig)
    assert "certificatesigningrequest.certificates.k8s.io/admin-csr approved" in approved
    shell("kubectl wait --for=jsonpath='{.status.certificate}' csr/admin-csr --timeout=20s", work, admin_kubeconfig)
    shell("kubectl get csr admin-csr -o jsonpath='{.status.certificate}' | base64 --decode > admin.crt",
          work, admin_kubeconfig)
    bound = shell("kubectl create clusterrolebinding admin --clusterrole=cluster-admin --user=admin "
                  "--group=system:masters", work, admin_kubeconfig)
    assert "clusterrolebinding.rbac.authorization.k8s.io/admin created" in bound
    (work / "ca.crt").write_bytes(control_plane.ca_pem)
    shell(f"kubectl config --kubeconfig admin.kubeconfig set-cluster manual --server={control_plane.endpoint} "
          "--certificate-authority=ca.crt --embed-certs", work)
    shell("kubectl config --kubeconfig admin.kubeconfig set-credentials admin --client-certificate=admin.crt "
          "--client-key=admin.key --embed-certs", work)
    shell("kubectl config --kubeconfig admin.kubeconfig set-context manual --cluster=manual --user=admin", work)
    shell("kubectl config --kubeconfig admin.kubeconfig use-context manual", work)

    services = shell("kubectl --kubeconfig admin.kubeconfig get svc", work).splitlines()
    assert services[0].split() == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    assert services[1].split()[:5] == ["kubernetes", "ClusterIP", "172.20.0.1", "<none>", "443/TCP"]

    issued = x509.load_pem_x509_certificate((work / "admin.crt").read_bytes())
    assert issued.subject.rfc4514_string() == "CN=admin"
    # -days 365 is ignored: the signer's --cluster-signing-duration (one year, from the backdated notBefore) decides.
    lifetime = issued.not_valid_after_utc - issued.not_valid_before_utc
    assert lifetime == dt.timedelta(days=365)
    whoami = shell("kubectl --kubeconfig admin.kubeconfig auth whoami -o jsonpath='{.status.userInfo}'", work)
    assert '"username":"admin"' in whoami and "system:authenticated" in whoami
