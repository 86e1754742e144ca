"""Authentication and authorization seen through real kubectl: client certificates, EKS IAM tokens
verified against a fake STS on loopback, aws-auth mapping, RBAC Forbidden messages."""

from __future__ import annotations

import datetime as dt
import json
import socket
import sys
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
from lifeline_agent.eks_token import get_token
from lifeline_agent.kubeconfig import ExecPlugin, build_kubeconfig, dump_kubeconfig

from lab.controlplane import ControlPlane, ControlPlaneOptions
from lab.pki import ClusterCA
from tests.conftest import run_kubectl

ACCOUNT = "111122223333"
CREATOR = f"arn:aws:iam::{ACCOUNT}:role/cluster-creator"
OPS_ROLE = f"arn:aws:iam::{ACCOUNT}:role/ops"
UNAUTHORIZED = "error: You must be logged in to the server (Unauthorized)"


class FakeSts:
    """Answers presigned GetCallerIdentity GETs with ``self.arn``; records the requests it saw."""

    def __init__(self) -> None:
        self.arn = f"arn:aws:sts::{ACCOUNT}:assumed-role/ops/alice@example.com"
        self.requests: list[tuple[str, dict[str, str]]] = []
        sts = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                sts.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                result = {"Arn": sts.arn, "Account": ACCOUNT, "UserId": "AROAEXAMPLE:alice"}
                body = json.dumps({"GetCallerIdentityResponse": {"GetCallerIdentityResult": result}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def sts() -> Iterator[FakeSts]:
    fake = FakeSts()
    yield fake
    fake.close()


@pytest.fixture(scope="module")
def hung_sts() -> Iterator[str]:
    """A port that accepts connections (kernel backlog) and never answers: a cut link."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield f"127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


def start_control_plane(sts_host: str, name: str) -> ControlPlane:
    options = ControlPlaneOptions(cluster_name=name, cluster_id=str(uuid.uuid4()), sts_url=f"http://{sts_host}",
                                  sts_allowed_hosts=(sts_host,), sts_timeout=1.0, creator_arn=CREATOR)
    cp = ControlPlane(options)
    cp.start()
    return cp


@pytest.fixture(scope="module")
def control_plane(sts: FakeSts, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    cp = start_control_plane(sts.host, "auth")
    # An operator has used this cluster before: kubectl's discovery cache for the endpoint is warm, so a
    # refused credential shows kubectl's short "(Unauthorized)" line (see the hung-STS test for a cold cache).
    admin = cert_kubeconfig(cp, tmp_path_factory.mktemp("warm") / "admin", *cp.admin_credentials())
    assert run_kubectl(admin, "api-resources").rc == 0
    yield cp
    cp.stop()


def cert_kubeconfig(cp: ControlPlane, path: Path, cert_pem: bytes, key_pem: bytes) -> Path:
    config = build_kubeconfig(cluster_name="auth", server=cp.endpoint, ca_pem=cp.ca_pem, user_name="u",
                              client_cert_pem=cert_pem, client_key_pem=key_pem)
    path.write_bytes(dump_kubeconfig(config))
    return path


def token_kubeconfig(cp: ControlPlane, path: Path, token_for: str, sts_endpoint: str) -> Path:
    """A kubeconfig whose exec plugin prints an EKS token made (locally) for ``sts_endpoint``."""
    session = boto3.Session(aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret",
                            region_name="us-west-2")
    token = get_token(token_for, session=session, endpoint_url=sts_endpoint)
    plugin = ExecPlugin(command=sys.executable, args=["-c", f"print({token.exec_credential_json()!r})"])
    config = build_kubeconfig(cluster_name="auth", server=cp.endpoint, ca_pem=cp.ca_pem, user_name="iam",
                              exec_plugin=plugin)
    path.write_bytes(dump_kubeconfig(config))
    return path


def whoami(kubeconfig: Path) -> dict[str, Any]:
    result = run_kubectl(kubeconfig, "auth", "whoami", "-o", "json")
    assert result.rc == 0, result.stderr
    info: dict[str, Any] = json.loads(result.stdout)["status"]["userInfo"]
    return info


def set_aws_auth(cp: ControlPlane, map_roles: str) -> None:
    configmap = {"metadata": {"name": "aws-auth", "namespace": "kube-system"}, "data": {"mapRoles": map_roles}}
    if cp.store.find("configmaps", "kube-system", "aws-auth") is None:
        cp.store.create("configmaps", configmap)
    else:
        cp.store.update("configmaps", configmap)


# --- client certificates ------------------------------------------------------------------------------

def test_client_certificate_identity_is_cn_and_o(control_plane: ControlPlane, tmp_path: Path) -> None:
    cert_pem, key_pem = control_plane.ca.issue_client_cert("lifeline:host-1", ["lifeline:breakglass"])
    info = whoami(cert_kubeconfig(control_plane, tmp_path / "c", cert_pem, key_pem))
    assert info["username"] == "lifeline:host-1"
    assert info["groups"] == ["lifeline:breakglass", "system:authenticated"]


def test_user_without_binding_gets_forbidden(control_plane: ControlPlane, tmp_path: Path) -> None:
    cert_pem, key_pem = control_plane.ca.issue_client_cert("nobody", ["nobodies"])
    kubeconfig = cert_kubeconfig(control_plane, tmp_path / "c", cert_pem, key_pem)
    result = run_kubectl(kubeconfig, "get", "svc")
    assert result.rc == 1
    assert result.stderr.strip() == ('Error from server (Forbidden): services is forbidden: User "nobody" cannot '
                                     'list resource "services" in API group "" in the namespace "default"')
    approve = run_kubectl(kubeconfig, "certificate", "approve", "some-csr")
    assert approve.stderr.strip() == (
        'Error from server (Forbidden): certificatesigningrequests.certificates.k8s.io "some-csr" is forbidden: '
        'User "nobody" cannot get resource "certificatesigningrequests" in API group "certificates.k8s.io" '
        "at the cluster scope"
    )


def test_deleting_the_binding_revokes_access(control_plane: ControlPlane, tmp_path: Path) -> None:
    cert_pem, key_pem = control_plane.ca.issue_client_cert("lifeline:host-2", ["lifeline:revocable"])
    kubeconfig = cert_kubeconfig(control_plane, tmp_path / "c", cert_pem, key_pem)
    control_plane.store.create("clusterrolebindings", {
        "metadata": {"name": "revocable"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "lifeline:revocable"}],
    })
    assert run_kubectl(kubeconfig, "get", "svc").rc == 0
    control_plane.store.delete("clusterrolebindings", "", "revocable")
    assert "Forbidden" in run_kubectl(kubeconfig, "get", "svc").stderr


def test_expired_certificate_is_unauthorized(control_plane: ControlPlane, tmp_path: Path) -> None:
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)
    cert_pem, key_pem = control_plane.ca.issue_client_cert("admin", ["system:masters"], dt.timedelta(days=1),
                                                           not_before=long_ago)
    result = run_kubectl(cert_kubeconfig(control_plane, tmp_path / "c", cert_pem, key_pem), "get", "svc")
    assert result.rc == 1
    assert result.stderr.strip().splitlines()[-1] == UNAUTHORIZED


def test_certificate_from_another_ca_is_unauthorized(control_plane: ControlPlane, tmp_path: Path) -> None:
    cert_pem, key_pem = ClusterCA.create("other").issue_client_cert("admin", ["system:masters"])
    result = run_kubectl(cert_kubeconfig(control_plane, tmp_path / "c", cert_pem, key_pem), "get", "svc")
    assert result.rc == 1
    assert result.stderr.strip().splitlines()[-1] == UNAUTHORIZED


def test_anonymous_may_only_read_health_and_version(control_plane: ControlPlane) -> None:
    import ssl
    import urllib.error
    import urllib.request

    context = ssl.create_default_context(cadata=control_plane.ca_pem.decode())
    with urllib.request.urlopen(f"{control_plane.endpoint}/readyz", context=context, timeout=5) as response:
        assert response.read() == b"ok"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{control_plane.endpoint}/api/v1/namespaces", context=context, timeout=5)
    body = json.loads(refused.value.read())
    assert refused.value.code == 403
    assert body["message"] == ('namespaces is forbidden: User "system:anonymous" cannot list resource '
                               '"namespaces" in API group "" at the cluster scope')


# --- EKS IAM tokens -----------------------------------------------------------------------------------

def test_iam_token_mapped_through_aws_auth(control_plane: ControlPlane, sts: FakeSts, tmp_path: Path) -> None:
    set_aws_auth(control_plane, f"- rolearn: {OPS_ROLE}\n  username: ops:{{{{SessionName}}}}\n"
                                "  groups:\n  - lifeline:ops\n")
    sts.arn = f"arn:aws:sts::{ACCOUNT}:assumed-role/ops/alice@example.com"
    seen = len(sts.requests)
    info = whoami(token_kubeconfig(control_plane, tmp_path / "t", "auth", f"http://{sts.host}"))
    assert info["username"] == "ops:alice-example.com"
    assert info["groups"] == ["lifeline:ops", "system:authenticated"]
    assert info["extra"]["canonicalArn"] == [OPS_ROLE]
    path, headers = sts.requests[seen]
    assert "Action=GetCallerIdentity" in path and "X-Amz-Signature=" in path
    assert headers["x-k8s-aws-id"] == "auth"


def test_cluster_creator_is_admin_without_mapping(control_plane: ControlPlane, sts: FakeSts,
                                                  tmp_path: Path) -> None:
    sts.arn = f"arn:aws:sts::{ACCOUNT}:assumed-role/cluster-creator/session-1"
    kubeconfig = token_kubeconfig(control_plane, tmp_path / "t", "auth", f"http://{sts.host}")
    info = whoami(kubeconfig)
    assert info["username"] == "kubernetes-admin"
    assert "system:masters" in info["groups"]
    assert "kubernetes   ClusterIP   172.20.0.1" in run_kubectl(kubeconfig, "get", "svc").stdout


def test_unmapped_arn_is_unauthorized(control_plane: ControlPlane, sts: FakeSts, tmp_path: Path) -> None:
    sts.arn = f"arn:aws:iam::{ACCOUNT}:user/mallory"
    result = run_kubectl(token_kubeconfig(control_plane, tmp_path / "t", "auth", f"http://{sts.host}"), "get", "svc")
    assert result.rc == 1
    assert result.stderr.strip() == UNAUTHORIZED


def test_token_for_a_foreign_sts_host_is_rejected_without_a_call(control_plane: ControlPlane, sts: FakeSts,
                                                                  tmp_path: Path) -> None:
    seen = len(sts.requests)
    kubeconfig = token_kubeconfig(control_plane, tmp_path / "t", "auth", "https://sts.evil.example.com")
    result = run_kubectl(kubeconfig, "get", "svc")
    assert result.stderr.strip() == UNAUTHORIZED
    assert len(sts.requests) == seen


def test_sts_that_never_answers_means_unauthorized(hung_sts: str, tmp_path: Path) -> None:
    cp = start_control_plane(hung_sts, "cut")
    try:
        result = run_kubectl(token_kubeconfig(cp, tmp_path / "t", "cut", f"http://{hung_sts}"), "get", "svc")
    finally:
        cp.stop()
    assert result.rc == 1
    # No discovery cached for this new endpoint: kubectl logs its discovery retries, then gives up with
    # "... logged in to the server (the server has asked for the client to provide credentials)".
    assert result.stderr.strip().splitlines()[-1].startswith("error: You must be logged in to the server (")


def test_impersonation_needs_the_impersonate_verb(control_plane: ControlPlane, tmp_path: Path) -> None:
    admin = cert_kubeconfig(control_plane, tmp_path / "admin", *control_plane.admin_credentials())
    as_bob = run_kubectl(admin, "auth", "whoami", "-o", "json", "--as=bob", "--as-group=lifeline:breakglass")
    assert json.loads(as_bob.stdout)["status"]["userInfo"] == {
        "username": "bob", "groups": ["lifeline:breakglass", "system:authenticated"]}
    cert_pem, key_pem = control_plane.ca.issue_client_cert("nobody", ["nobodies"])
    nobody = cert_kubeconfig(control_plane, tmp_path / "nobody", cert_pem, key_pem)
    refused = run_kubectl(nobody, "get", "--raw", "/api/v1/namespaces/default/services", "--as=admin",
                          "--as-group=system:masters")
    assert refused.stderr.strip() == ('Error from server (Forbidden): users "admin" is forbidden: User "nobody" '
                                      'cannot impersonate resource "users" in API group "" at the cluster scope')
