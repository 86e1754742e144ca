"""The official ``kubernetes`` Python client against the lab control plane, unchanged."""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from lab.controlplane import ControlPlane, ControlPlaneOptions
from lab.pki import private_key_pem

SIGNER = "kubernetes.io/kube-apiserver-client"


@pytest.fixture(scope="module")
def control_plane() -> Iterator[ControlPlane]:
    with ControlPlane(ControlPlaneOptions(cluster_name="pyclient", cluster_id=str(uuid.uuid4()))) as cp:
        yield cp


def api_client(cp: ControlPlane, directory: Path, cert_pem: bytes, key_pem: bytes) -> client.ApiClient:
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in (("ca.crt", cp.ca_pem), ("tls.crt", cert_pem), ("tls.key", key_pem)):
        (directory / name).write_bytes(data)
    configuration = client.Configuration()
    configuration.host = cp.endpoint
    configuration.ssl_ca_cert = str(directory / "ca.crt")
    configuration.cert_file = str(directory / "tls.crt")
    configuration.key_file = str(directory / "tls.key")
    return client.ApiClient(configuration)


@pytest.fixture(scope="module")
def admin_client(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> client.ApiClient:
    return api_client(control_plane, tmp_path_factory.mktemp("admin"), *control_plane.admin_credentials())


def new_csr(name: str, common_name: str, groups: list[str]) -> tuple[client.V1CertificateSigningRequest, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([*(x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups),
                         x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    request = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    body = client.V1CertificateSigningRequest(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1CertificateSigningRequestSpec(
            request=base64.b64encode(request.public_bytes(serialization.Encoding.PEM)).decode(),
            signer_name=SIGNER, usages=["client auth", "digital signature"], expiration_seconds=3600,
        ),
    )
    return body, private_key_pem(key)


def approve(certificates: client.CertificatesV1Api, name: str) -> None:
    current = certificates.read_certificate_signing_request(name)
    condition = client.V1CertificateSigningRequestCondition(
        type="Approved", status="True", reason="LabApprove", message="approved by the Python client test")
    current.status.conditions = [condition]
    certificates.replace_certificate_signing_request_approval(name, current)


def wait_for_certificate(certificates: client.CertificatesV1Api, name: str) -> bytes:
    stream = watch.Watch().stream(certificates.list_certificate_signing_request,
                                  field_selector=f"metadata.name={name}", timeout_seconds=10)
    for event in stream:
        issued = event["object"].status.certificate
        if issued:
            return base64.b64decode(issued)
    raise AssertionError(f"no certificate issued for {name}")


def test_csr_flow_and_self_subject_review(control_plane: ControlPlane, admin_client: client.ApiClient,
                                          tmp_path: Path) -> None:
    certificates = client.CertificatesV1Api(admin_client)
    name = f"py-{uuid.uuid4().hex[:6]}"
    body, key_pem = new_csr(name, "lifeline:host-py", ["lifeline:breakglass"])
    created = certificates.create_certificate_signing_request(body)
    assert created.spec.username == "lab:admin"
    assert "system:masters" in created.spec.groups
    approve(certificates, name)
    cert_pem = wait_for_certificate(certificates, name)
    status = certificates.read_certificate_signing_request(name).status
    assert [c.type for c in status.conditions] == ["Approved"]

    issued = x509.load_pem_x509_certificate(cert_pem)
    assert issued.not_valid_after_utc - issued.not_valid_before_utc == dt.timedelta(seconds=3600 + 300)
    as_host = api_client(control_plane, tmp_path / "host", cert_pem, key_pem)
    review = client.AuthenticationV1Api(as_host).create_self_subject_review(client.V1SelfSubjectReview())
    assert review.status.user_info.username == "lifeline:host-py"
    assert review.status.user_info.groups == ["lifeline:breakglass", "system:authenticated"]

    access = client.AuthorizationV1Api(as_host).create_self_subject_access_review(client.V1SelfSubjectAccessReview(
        spec=client.V1SelfSubjectAccessReviewSpec(resource_attributes=client.V1ResourceAttributes(
            verb="list", resource="services", namespace="default"))))
    assert access.status.allowed is False


def test_replace_with_stale_resource_version_conflicts(admin_client: client.ApiClient) -> None:
    rbac = client.RbacAuthorizationV1Api(admin_client)
    name = f"conflict-{uuid.uuid4().hex[:6]}"
    created = rbac.create_cluster_role(client.V1ClusterRole(metadata=client.V1ObjectMeta(name=name), rules=[]))
    created.rules = [client.V1PolicyRule(api_groups=[""], resources=["pods"], verbs=["get"])]
    rbac.replace_cluster_role(name, created)
    with pytest.raises(ApiException) as conflict:
        rbac.replace_cluster_role(name, created)
    assert conflict.value.status == 409
    assert json.loads(conflict.value.body)["message"] == (
        f'Operation cannot be fulfilled on clusterroles.rbac.authorization.k8s.io "{name}": the object has been '
        "modified; please apply your changes to the latest version and try again")
    rbac.delete_cluster_role(name)
    with pytest.raises(ApiException) as gone:
        rbac.read_cluster_role(name)
    assert gone.value.status == 404


def test_fault_injection_answers_with_a_status(control_plane: ControlPlane, admin_client: client.ApiClient) -> None:
    core = client.CoreV1Api(admin_client)
    control_plane.fail_next(r"/api/v1/namespaces/default/services$", status=503, count=1)
    with pytest.raises(ApiException) as injected:
        core.list_namespaced_service("default")
    assert injected.value.status == 503
    assert [s.metadata.name for s in core.list_namespaced_service("default").items] == ["kubernetes"]


def test_the_client_keeps_one_connection_for_many_calls(control_plane: ControlPlane, tmp_path: Path) -> None:
    fresh = api_client(control_plane, tmp_path, *control_plane.admin_credentials())
    pool = fresh.rest_client.pool_manager.connection_from_url(control_plane.endpoint)  # the one the calls use
    connects: list[object] = []

    class Counted(pool.ConnectionCls):  # type: ignore[name-defined,misc]
        def connect(self) -> None:
            super().connect()  # urllib3 connects one connection object again when the server closed it
            connects.append(self)

    pool.ConnectionCls = Counted
    core = client.CoreV1Api(fresh)
    name = f"kept-{uuid.uuid4().hex[:6]}"
    core.list_namespace()
    core.create_namespaced_config_map("default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name)))
    core.read_namespaced_config_map(name, "default")
    core.delete_namespaced_config_map(name, "default")
    with pytest.raises(ApiException) as gone:
        core.read_namespaced_config_map(name, "default")
    assert gone.value.status == 404
    assert [s.metadata.name for s in core.list_namespaced_service("default").items] == ["kubernetes"]
    fresh.close()
    assert len(connects) == 1
