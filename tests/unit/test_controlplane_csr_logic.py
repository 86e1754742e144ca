"""CSR validation, admission and signing rules (pure logic, no server)."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from lab.controlplane import csr as csrs
from lab.controlplane import signer as signers
from lab.controlplane.errors import ApiError
from lab.controlplane.rbac_eval import UserInfo
from lab.controlplane.store import ObjectStore
from lab.controlplane.tables import human_duration, table
from lab.pki import ClusterCA, CsrError, parse_csr


def pem_request(cn: str = "lifeline:host", orgs: tuple[str, ...] = ()) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    subject = x509.Name([*names, x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    return x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256()).public_bytes(
        serialization.Encoding.PEM)


def csr_object(name: str = "c", request: bytes | None = None, **spec: Any) -> dict[str, Any]:
    body = {"request": base64.b64encode(request if request is not None else pem_request()).decode(),
            "signerName": csrs.KUBE_APISERVER_CLIENT, "usages": ["client auth"]}
    body.update(spec)
    return {"metadata": {"name": name}, "spec": body}


def invalid_message(obj: dict[str, Any], minimum: int = 600) -> str:
    with pytest.raises(ApiError) as error:
        csrs.validate(obj, minimum)
    assert error.value.code == 422
    return error.value.message


def test_valid_request_passes() -> None:
    csrs.validate(csr_object(expirationSeconds=600), 600)


def test_several_problems_are_listed_together() -> None:
    message = invalid_message(csr_object("x", request=b"nope", usages=[], expirationSeconds=10))
    assert message == (
        'CertificateSigningRequest.certificates.k8s.io "x" is invalid: [spec.request: Invalid value: '
        "[]byte{0x6e, 0x6f, 0x70, 0x65}: PEM block type must be CERTIFICATE REQUEST, spec.usages: Required value, "
        "spec.expirationSeconds: Invalid value: 10: may not specify a duration less than "
        "600 seconds (10 minutes)]"
    )


def test_unknown_usage_is_not_supported() -> None:
    message = invalid_message(csr_object(usages=["client auth", "teleport"]))
    expected = 'spec.usages[1]: Unsupported value: "teleport": supported values: "any", "cert sign", "client auth"'
    assert expected in message


def test_missing_signer_is_required() -> None:
    assert "spec.signerName: Required value" in invalid_message(csr_object(signerName=""))


def test_invalid_base64_is_a_bad_request() -> None:
    obj = csr_object()
    obj["spec"]["request"] = "%%%"
    with pytest.raises(ApiError) as error:
        csrs.validate(obj, 600)
    assert error.value.code == 400


def test_system_masters_subject_is_refused_only_for_the_client_signer() -> None:
    masters = pem_request("admin", ("system:masters",))
    with pytest.raises(ApiError) as error:
        csrs.admit_subject(csr_object("m", request=masters))
    assert error.value.code == 403
    assert error.value.message.endswith("use of kubernetes.io/kube-apiserver-client signer with system:masters "
                                        "group is not allowed")
    csrs.admit_subject(csr_object("m", request=masters, signerName="example.com/other"))


def test_requester_fields_come_from_the_user_not_the_body() -> None:
    obj = csr_object(username="someone-else", groups=["system:masters"])
    obj["status"] = {"certificate": "Zm9v"}
    prepared = csrs.prepare_create(obj, UserInfo("lifeline:h", ("lifeline:agents", "system:authenticated"), "u1"))
    assert prepared["spec"]["username"] == "lifeline:h"
    assert prepared["spec"]["groups"] == ["lifeline:agents", "system:authenticated"]
    assert prepared["spec"]["uid"] == "u1"
    assert prepared["status"] == {}


@pytest.mark.parametrize(("usages", "problem"), [
    (["client auth"], None),
    (["digital signature", "key encipherment", "client auth"], None),
    (["server auth"], "invalid usage for client certificate: server auth"),
    (["digital signature"], "missing required usage for client certificate: client auth"),
])
def test_client_signer_usage_rule(usages: list[str], problem: str | None) -> None:
    assert signers.usage_problem(usages) == problem


def test_approval_needs_the_signer_or_its_domain_wildcard() -> None:
    granted: set[str] = set()
    assert not csrs.signer_allowed(csrs.KUBE_APISERVER_CLIENT, granted.__contains__)
    granted.add("kubernetes.io/*")
    assert csrs.signer_allowed(csrs.KUBE_APISERVER_CLIENT, granted.__contains__)


def test_approved_and_denied_are_mutually_exclusive() -> None:
    with pytest.raises(ApiError) as error:
        csrs.normalise_conditions([{"type": "Approved"}, {"type": "Denied"}], "x")
    assert "status.conditions[1].type: Invalid value: \"Denied\": Approved and Denied conditions are mutually " \
           "exclusive" in error.value.message


def test_signer_backdates_caps_and_copies_the_subject() -> None:
    ca = ClusterCA.create("kubernetes", key_type="ec")
    signer = signers.Signer(ObjectStore(), ca, signing_duration_seconds=3600)
    obj = csr_object(request=pem_request("lifeline:h", ("lifeline:breakglass",)), expirationSeconds=7200,
                     usages=["client auth", "digital signature"])
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    cert = x509.load_pem_x509_certificate(signer.issue(obj))
    assert cert.subject.rfc4514_string() == "CN=lifeline:h,O=lifeline:breakglass"
    assert cert.not_valid_before_utc >= before - dt.timedelta(minutes=5)
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == dt.timedelta(hours=1, minutes=5)
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    cert.verify_directly_issued_by(ca.certificate)


def test_signer_clock_offset_shifts_validity() -> None:
    ca = ClusterCA.create("kubernetes", key_type="ec")
    signer = signers.Signer(ObjectStore(), ca, signing_duration_seconds=3600)
    signer.clock_offset = 86400
    cert = x509.load_pem_x509_certificate(signer.issue(csr_object(expirationSeconds=600)))
    assert cert.not_valid_before_utc > dt.datetime.now(dt.UTC) + dt.timedelta(hours=23)


def test_parse_csr_rejects_other_pem_blocks() -> None:
    ca = ClusterCA.create("kubernetes", key_type="ec")
    with pytest.raises(CsrError, match="PEM block type must be CERTIFICATE REQUEST"):
        parse_csr(ca.cert_pem)


@pytest.mark.parametrize(("seconds", "text"), [
    (-5, "<invalid>"), (59, "59s"), (119, "119s"), (120, "2m"), (150, "2m30s"), (600, "10m"), (7200, "120m"),
    (3 * 3600 + 60, "3h1m"), (10 * 3600, "10h"), (7 * 86400, "7d"), (3 * 86400 + 3600, "3d1h"),
    (365 * 86400, "365d"), (3 * 365 * 86400 + 86400, "3y1d"), (9 * 365 * 86400, "9y"),
])
def test_human_duration_matches_kubernetes(seconds: int, text: str) -> None:
    assert human_duration(seconds) == text


def test_csr_table_condition_column() -> None:
    obj = {"metadata": {"name": "x", "creationTimestamp": "2026-01-01T00:00:00Z"},
           "spec": {"signerName": "s", "username": "u", "expirationSeconds": 604800},
           "status": {"conditions": [{"type": "Approved"}, {"type": "Failed"}]}}
    [row] = table("certificatesigningrequests", [obj], "1")["rows"]
    assert row["cells"][2:] == ["s", "u", "7d", "Approved,Failed"]
    assert row["object"]["kind"] == "PartialObjectMetadata"


def test_finished_csrs_are_collected_after_an_hour_pending_after_a_day() -> None:
    store = ObjectStore()
    signer = signers.Signer(store, ClusterCA.create("kubernetes", key_type="ec"), signing_duration_seconds=86400 * 7)
    for name, condition in (("approved", "Approved"), ("denied", "Denied"), ("pending", None)):
        obj = csr_object(name)
        if condition:
            obj["status"] = {"conditions": csrs.normalise_conditions([{"type": condition}], name)}
        store.create(csrs.PLURAL, obj)
    assert signer.collect_garbage() == []
    signer.clock_offset = 2 * 3600
    assert sorted(signer.collect_garbage()) == ["approved", "denied"]
    signer.clock_offset = 25 * 3600
    assert signer.collect_garbage() == ["pending"]
    assert store.list(csrs.PLURAL)[0] == []
