"""The CSR rules of DESIGN §1 / NOTES.md, each asserted on real kubectl's exact output."""

from __future__ import annotations

import base64
import datetime as dt
import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from lifeline_agent.kubeconfig import build_kubeconfig, dump_kubeconfig

from lab.controlplane import ControlPlane, ControlPlaneOptions
from tests.conftest import KUBECTL, run_kubectl

CLIENT_SIGNER = "kubernetes.io/kube-apiserver-client"


@pytest.fixture(scope="module")
def control_plane() -> Iterator[ControlPlane]:
    with ControlPlane(ControlPlaneOptions(cluster_name="csr-rules", cluster_id=str(uuid.uuid4()))) as cp:
        yield cp


def write_kubeconfig(cp: ControlPlane, path: Path, cert_pem: bytes, key_pem: bytes) -> Path:
    config = build_kubeconfig(cluster_name="csr-rules", server=cp.endpoint, ca_pem=cp.ca_pem, user_name="user",
                              client_cert_pem=cert_pem, client_key_pem=key_pem)
    path.write_bytes(dump_kubeconfig(config))
    return path


@pytest.fixture(scope="module")
def admin(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("admin") / "admin.kubeconfig"
    return write_kubeconfig(control_plane, path, *control_plane.admin_credentials())


def pem_csr(common_name: str, organizations: tuple[str, ...] = ()) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    subject = x509.Name([*names, x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM)


def csr_file(directory: Path, name: str, *, request: bytes | None = None, usages: list[str] | None = None,
             expiration_seconds: int | None = None, organizations: tuple[str, ...] = ()) -> Path:
    spec: dict[str, object] = {
        "request": base64.b64encode(request if request is not None else pem_csr(name, organizations)).decode(),
        "signerName": CLIENT_SIGNER,
    }
    if usages is not None:
        spec["usages"] = usages
    if expiration_seconds is not None:
        spec["expirationSeconds"] = expiration_seconds
    document = {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
                "metadata": {"name": name}, "spec": spec}
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def unique(stem: str) -> str:
    return f"{stem}-{uuid.uuid4().hex[:6]}"


def wait_for_condition(admin: Path, name: str, wanted: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        result = run_kubectl(admin, "get", "csr", name, "--no-headers")
        if wanted in result.stdout or time.monotonic() > deadline:
            return result.stdout
        time.sleep(0.1)


def test_system_masters_subject_is_forbidden(admin: Path, tmp_path: Path) -> None:
    name = unique("masters")
    path = csr_file(tmp_path, name, usages=["client auth"], organizations=("system:masters",))
    result = run_kubectl(admin, "create", "-f", str(path))
    assert result.rc == 1
    assert result.stderr.strip() == (
        f'Error from server (Forbidden): error when creating "{path}": certificatesigningrequests.'
        f'certificates.k8s.io "{name}" is forbidden: use of kubernetes.io/kube-apiserver-client signer '
        "with system:masters group is not allowed"
    )


def test_expiration_below_600_seconds_is_invalid(admin: Path, tmp_path: Path) -> None:
    name = unique("short")
    result = run_kubectl(admin, "create", "-f", str(csr_file(tmp_path, name, usages=["client auth"],
                                                              expiration_seconds=599)))
    assert result.rc == 1
    assert result.stderr.strip() == (
        f'The CertificateSigningRequest "{name}" is invalid: spec.expirationSeconds: Invalid value: 599: '
        "may not specify a duration less than 600 seconds (10 minutes)"
    )


def test_lab_lowered_minimum_keeps_the_phrasing(tmp_path: Path) -> None:
    options = ControlPlaneOptions(cluster_name="short-min", cluster_id="id", min_expiration_seconds=30)
    with ControlPlane(options) as cp:
        kubeconfig = write_kubeconfig(cp, tmp_path / "admin.kubeconfig", *cp.admin_credentials())
        refused = run_kubectl(kubeconfig, "create", "-f", str(csr_file(tmp_path, "c29", usages=["client auth"],
                                                                      expiration_seconds=29)))
        accepted = run_kubectl(kubeconfig, "create", "-f", str(csr_file(tmp_path, "c30", usages=["client auth"],
                                                                       expiration_seconds=30)))
    assert refused.stderr.strip() == (
        'The CertificateSigningRequest "c29" is invalid: spec.expirationSeconds: Invalid value: 29: '
        "may not specify a duration less than 30 seconds"
    )
    assert accepted.rc == 0, accepted.stderr


def test_missing_usages_are_required(admin: Path, tmp_path: Path) -> None:
    name = unique("nousage")
    result = run_kubectl(admin, "create", "-f", str(csr_file(tmp_path, name)))
    assert result.rc == 1
    assert result.stderr.strip() == (
        f'The CertificateSigningRequest "{name}" is invalid: spec.usages: Required value'
    )


def test_request_that_is_not_a_pem_csr_is_invalid(admin: Path, tmp_path: Path) -> None:
    name = unique("notcsr")
    result = run_kubectl(admin, "create", "-f", str(csr_file(tmp_path, name, request=b"hello",
                                                              usages=["client auth"])))
    assert result.rc == 1
    assert result.stderr.strip() == (
        f'The CertificateSigningRequest "{name}" is invalid: spec.request: Invalid value: '
        "[]byte{0x68, 0x65, 0x6c, 0x6c, 0x6f}: PEM block type must be CERTIFICATE REQUEST"
    )


def test_server_auth_usage_ends_approved_failed(admin: Path, tmp_path: Path) -> None:
    name = unique("serverauth")
    created = run_kubectl(admin, "create", "-f", str(csr_file(tmp_path, name, usages=["server auth"])))
    assert created.rc == 0, created.stderr
    assert run_kubectl(admin, "certificate", "approve", name).rc == 0
    row = wait_for_condition(admin, name, "Failed")
    assert row.split()[-1] == "Approved,Failed"
    conditions = json.loads(run_kubectl(admin, "get", "csr", name, "-o", "jsonpath={.status.conditions}").stdout)
    failed = next(c for c in conditions if c["type"] == "Failed")
    assert failed["message"] == "invalid usage for client certificate: server auth"
    assert run_kubectl(admin, "get", "csr", name, "-o", "jsonpath={.status.certificate}").stdout == ""


def test_deny_shows_denied_and_issues_nothing(admin: Path, tmp_path: Path) -> None:
    name = unique("deny")
    assert run_kubectl(admin, "create", "-f", str(csr_file(tmp_path, name, usages=["client auth"]))).rc == 0
    denied = run_kubectl(admin, "certificate", "deny", name)
    assert denied.stdout.strip() == f"certificatesigningrequest.certificates.k8s.io/{name} denied"
    time.sleep(0.3)  # give the signer its chance to (wrongly) act
    assert run_kubectl(admin, "get", "csr", name, "--no-headers").stdout.split()[-1] == "Denied"


def test_get_csr_columns(admin: Path, tmp_path: Path) -> None:
    name = unique("columns")
    path = csr_file(tmp_path, name, usages=["client auth", "digital signature"], expiration_seconds=600)
    assert run_kubectl(admin, "create", "-f", str(path)).rc == 0
    assert run_kubectl(admin, "certificate", "approve", name).rc == 0
    wait_for_condition(admin, name, "Issued")
    lines = run_kubectl(admin, "get", "csr", name).stdout.splitlines()
    assert lines[0].split() == ["NAME", "AGE", "SIGNERNAME", "REQUESTOR", "REQUESTEDDURATION", "CONDITION"]
    row = lines[1].split()
    assert row[0] == name and row[2:] == [CLIENT_SIGNER, "lab:admin", "10m", "Approved,Issued"]
    no_duration = unique("noduration")
    assert run_kubectl(admin, "create", "-f", str(csr_file(tmp_path, no_duration, usages=["client auth"]))).rc == 0
    pending = run_kubectl(admin, "get", "csr", no_duration, "--no-headers").stdout.split()
    assert pending[-2:] == ["<none>", "Pending"]


def issued_certificate(admin: Path, name: str) -> x509.Certificate:
    wait_for_condition(admin, name, "Issued")
    encoded = run_kubectl(admin, "get", "csr", name, "-o", "jsonpath={.status.certificate}").stdout
    return x509.load_pem_x509_certificate(base64.b64decode(encoded))


def test_issued_certificate_is_backdated_and_capped(
    control_plane: ControlPlane, admin: Path, tmp_path: Path
) -> None:
    short = unique("ten-minutes")
    assert run_kubectl(admin, "create", "-f", str(csr_file(tmp_path, short, usages=["client auth"],
                                                            expiration_seconds=600))).rc == 0
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    assert run_kubectl(admin, "certificate", "approve", short).rc == 0
    cert = issued_certificate(admin, short)
    after = dt.datetime.now(dt.UTC)
    five_minutes, slack = dt.timedelta(minutes=5), dt.timedelta(seconds=1)
    assert before - five_minutes - slack <= cert.not_valid_before_utc <= after - five_minutes
    assert before + dt.timedelta(minutes=10) - slack <= cert.not_valid_after_utc <= after + dt.timedelta(minutes=10)
    assert cert.subject.rfc4514_string() == f"CN={short}"

    control_plane.set_signing_duration(900)
    try:
        long = unique("capped")
        assert run_kubectl(admin, "create", "-f", str(csr_file(tmp_path, long, usages=["client auth"],
                                                                expiration_seconds=7 * 24 * 3600))).rc == 0
        assert run_kubectl(admin, "certificate", "approve", long).rc == 0
        capped = issued_certificate(admin, long)
    finally:
        control_plane.set_signing_duration(365 * 24 * 3600)
    lifetime = capped.not_valid_after_utc - capped.not_valid_before_utc
    assert lifetime == dt.timedelta(seconds=900) + five_minutes


def test_approve_without_signer_permission_is_forbidden(
    control_plane: ControlPlane, admin: Path, tmp_path: Path
) -> None:
    rules = [
        {"apiGroups": ["certificates.k8s.io"], "resources": ["certificatesigningrequests"],
         "verbs": ["get", "list", "create"]},
        {"apiGroups": ["certificates.k8s.io"], "resources": ["certificatesigningrequests/approval"],
         "verbs": ["update"]},
    ]
    control_plane.store.create("clusterroles", {"metadata": {"name": "half-approver"}, "rules": rules})
    control_plane.store.create("clusterrolebindings", {
        "metadata": {"name": "half-approver"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "half-approver"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "half-approvers"}],
    })
    cert_pem, key_pem = control_plane.ca.issue_client_cert("approver", ["half-approvers"])
    approver = write_kubeconfig(control_plane, tmp_path / "approver.kubeconfig", cert_pem, key_pem)
    name = unique("needs-signer")
    assert run_kubectl(approver, "create", "-f", str(csr_file(tmp_path, name, usages=["client auth"]))).rc == 0
    refused = run_kubectl(approver, "certificate", "approve", name)
    assert refused.rc == 1
    assert refused.stderr.strip() == (
        f'Error from server (Forbidden): certificatesigningrequests.certificates.k8s.io "{name}" is forbidden: '
        'user not permitted to approve requests with signerName "kubernetes.io/kube-apiserver-client"'
    )
    assert run_kubectl(admin, "get", "csr", name, "--no-headers").stdout.split()[-1] == "Pending"

    rules.append({"apiGroups": ["certificates.k8s.io"], "resources": ["signers"], "verbs": ["approve"],
                  "resourceNames": [CLIENT_SIGNER]})
    control_plane.store.mutate("clusterroles", "", "half-approver", lambda role: role.update(rules=rules))
    approved = run_kubectl(approver, "certificate", "approve", name)
    assert approved.rc == 0, approved.stderr
    assert "Approved" in wait_for_condition(admin, name, "Issued")


def test_get_csr_watch_shows_each_transition(admin: Path, tmp_path: Path) -> None:
    name = unique("watched")
    assert run_kubectl(admin, "create", "-f", str(csr_file(tmp_path, name, usages=["client auth"]))).rc == 0
    watcher = subprocess.Popen([str(KUBECTL), f"--kubeconfig={admin}", "get", "csr", name, "-w",
                                "--request-timeout=20s"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert watcher.stdout is not None
        assert watcher.stdout.readline().split()[-1] == "CONDITION"
        assert watcher.stdout.readline().split()[-1] == "Pending"
        assert run_kubectl(admin, "certificate", "approve", name).rc == 0
        assert watcher.stdout.readline().split()[-1] == "Approved"
        assert watcher.stdout.readline().split()[-1] == "Approved,Issued"
    finally:
        watcher.kill()
        watcher.communicate()


def test_misspelt_field_is_refused_under_kubectl_strict_validation(admin: Path, tmp_path: Path) -> None:
    name = unique("typo")
    path = csr_file(tmp_path, name, usages=["client auth"])
    path.write_text(path.read_text().replace("signerName:", "expirationSecond: 600\n  signerName:"))
    result = run_kubectl(admin, "create", "-f", str(path))
    assert result.stderr.strip() == (
        f'Error from server (BadRequest): error when creating "{path}": CertificateSigningRequest in version "v1" '
        'cannot be handled as a CertificateSigningRequest: strict decoding error: unknown field '
        '"spec.expirationSecond"'
    )
    assert run_kubectl(admin, "create", "-f", str(path), "--validate=false").rc == 0
