"""Protobuf request bodies captured from real kubectl 1.37, decoded to their JSON shape."""

from __future__ import annotations

import base64

import pytest

from lab.controlplane import protobuf
from lab.controlplane.errors import ApiError

# kubectl create clusterrolebinding admin --clusterrole=cluster-admin --user=admin --group=system:masters
CLUSTER_ROLE_BINDING = bytes.fromhex(
    "6b3873000a320a1c726261632e617574686f72697a6174696f6e2e6b38732e696f2f76311212436c7573746572526f6c"
    "6542696e64696e6712b2010a150a0561646d696e12001a0022002a00320038004200122a0a0455736572121972626163"
    "2e617574686f72697a6174696f6e2e6b38732e696f1a0561646d696e220012340a0547726f75701219726261632e6175"
    "74686f72697a6174696f6e2e6b38732e696f1a0e73797374656d3a6d61737465727322001a370a19726261632e617574"
    "686f72697a6174696f6e2e6b38732e696f120b436c7573746572526f6c651a0d636c75737465722d61646d696e1a0022"
    "00"
)
# kubectl certificate approve admin-csr (PUT .../approval: the whole object with the new condition)
CSR_APPROVAL = bytes.fromhex(
    "6b3873000a330a166365727469666963617465732e6b38732e696f2f7631121943657274696669636174655369676e69"
    "6e675265717565737412fa040a470a0961646d696e2d63737212001a0022002a2433623330653164362d373462392d34"
    "6263652d613635612d663439366362646334653230320232383800420808ba99a5d806100012c7030adf022d2d2d2d2d"
    "424547494e20434552544946494341544520524551554553542d2d2d2d2d0a4d49484c4d484943415141774544454f4d"
    "417747413155454177774659575274615734775754415442676371686b6a4f5051494242676771686b6a4f50514d420a"
    "42774e434141547a73556b4a4377703641313068517178455435506d445268474a54425967332b342b7168326c51506e"
    "5654745656586d386a4d746e557771380a347a51344b504a4762786a756c5845464a484653446a694c54326e696f4141"
    "77436759494b6f5a497a6a3045417749445351417752674968414b33676956432b0a30643330394f43516f5830676637"
    "49557864585a307575683333616f46667a554565554541694541387864784a7a424f59702f5578642f5475434c493838"
    "652b0a4262726f6944413749456a444b2b57515551453d0a2d2d2d2d2d454e4420434552544946494341544520524551"
    "554553542d2d2d2d2d0a12096c61623a61646d696e1a00220e73797374656d3a6d617374657273221473797374656d3a"
    "61757468656e746963617465642a0b636c69656e7420617574683a236b756265726e657465732e696f2f6b7562652d61"
    "70697365727665722d636c69656e741a650a630a08417070726f766564120e4b75626563746c417070726f76651a3554"
    "686973204353522077617320617070726f766564206279206b75626563746c2063657274696669636174652061707072"
    "6f76652e220808ba99a5d80610002a003204547275651a002200"
)
# kubectl auth can-i create csr
SELF_SUBJECT_ACCESS_REVIEW = (
    b"k8s\x00\n2\n\x17authorization.k8s.io/v1\x12\x17SelfSubjectAccessReview\x12h\n\x10\n\x00\x12\x00\x1a\x00\"\x00"
    b"*\x002\x008\x00B\x00\x12J\nH\n\x07default\x12\x06create\x1a\x13certificates.k8s.io\"\x00"
    b"*\x1acertificatesigningrequests2\x00:\x00\x1a\x08\x08\x00\x12\x00\x1a\x00 \x00\x1a\x00\"\x00"
)


def test_cluster_role_binding() -> None:
    decoded = protobuf.decode(CLUSTER_ROLE_BINDING)
    assert decoded == {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "admin"},
        "subjects": [
            {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "admin"},
            {"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "system:masters"},
        ],
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
    }


def test_csr_approval_keeps_request_bytes_conditions_and_resource_version() -> None:
    decoded = protobuf.decode(CSR_APPROVAL)
    assert decoded["kind"] == "CertificateSigningRequest"
    assert decoded["metadata"]["name"] == "admin-csr"
    assert decoded["metadata"]["resourceVersion"].isdigit()
    assert base64.b64decode(decoded["spec"]["request"]).startswith(b"-----BEGIN CERTIFICATE REQUEST-----")
    assert decoded["spec"]["signerName"] == "kubernetes.io/kube-apiserver-client"
    assert decoded["spec"]["usages"] == ["client auth"]
    assert decoded["spec"]["groups"] == ["system:masters", "system:authenticated"]
    [condition] = decoded["status"]["conditions"]
    assert condition["type"] == "Approved" and condition["status"] == "True"
    assert condition["reason"] == "KubectlApprove"
    assert condition["lastUpdateTime"].endswith("Z")


def test_self_subject_access_review() -> None:
    decoded = protobuf.decode(SELF_SUBJECT_ACCESS_REVIEW)
    assert decoded["spec"]["resourceAttributes"] == {
        "namespace": "default", "verb": "create", "group": "certificates.k8s.io",
        "resource": "certificatesigningrequests",
    }


@pytest.mark.parametrize("body", [b"not protobuf", b"k8s\x00\x0a\xff\xff", CLUSTER_ROLE_BINDING[:40]])
def test_garbage_is_a_bad_request(body: bytes) -> None:
    with pytest.raises(ApiError) as error:
        protobuf.decode(body)
    assert error.value.code == 400
