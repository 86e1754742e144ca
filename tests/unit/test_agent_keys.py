"""Keys made on the host, the CSR for them, reading the issued certificate, and kubeconfig parsing."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from lifeline_agent import kube
from lifeline_agent.keys import (
    CSR_USAGES,
    CertificateError,
    generate_key,
    key_pem,
    key_type_of,
    load_key,
    make_csr,
    parse_certificate,
)
from lifeline_agent.kubeconfig import build_kubeconfig

from lab.pki import ClusterCA


@pytest.mark.parametrize(("key_type", "kind", "size"), [("ecdsa-p256", ec.EllipticCurvePrivateKey, 256),
                                                        ("rsa-2048", rsa.RSAPrivateKey, 2048)])
def test_key_types(key_type, kind, size):
    key = generate_key(key_type)
    assert isinstance(key, kind)
    assert key.key_size == size
    assert key_type_of(key) == key_type
    assert key_type_of(load_key(key_pem(key))) == key_type


def test_unknown_key_type_and_bad_key_pem():
    with pytest.raises(ValueError, match="unknown key type"):
        generate_key("dsa-1024")
    with pytest.raises(CertificateError, match="not an unencrypted PEM key"):
        load_key(b"-----BEGIN " b"PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")


def test_csr_has_the_design_subject_and_is_self_signed():
    key = generate_key("ecdsa-p256")
    csr = x509.load_pem_x509_csr(make_csr(key, "lifeline:host-1", "lifeline:breakglass"))
    assert csr.is_signature_valid
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "lifeline:host-1"
    assert [a.value for a in csr.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == ["lifeline:breakglass"]
    assert csr.public_key() == key.public_key()
    assert CSR_USAGES == ("digital signature", "client auth")


def test_issued_certificate_is_read_back():
    ca = ClusterCA.create("kubernetes")
    key = generate_key("ecdsa-p256")
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=5)
    cert_pem = ca.sign_csr(make_csr(key, "lifeline:h", "lifeline:breakglass"), start,
                           start + dt.timedelta(seconds=360), list(CSR_USAGES))
    certificate = parse_certificate(cert_pem)
    assert (certificate.common_name, certificate.organizations) == ("lifeline:h", ("lifeline:breakglass",))
    assert certificate.lifetime == 360
    assert certificate.matches_key(key)
    assert not certificate.matches_key(generate_key("ecdsa-p256"))
    assert certificate.signed_by(ca.cert_pem)
    assert not certificate.signed_by(ClusterCA.create("other").cert_pem)
    assert not certificate.expired(start.timestamp() + 10)
    assert certificate.expired(start.timestamp() + 360)


def test_a_server_certificate_is_not_accepted_as_a_client_certificate():
    ca = ClusterCA.create("kubernetes")
    start = dt.datetime.now(dt.UTC)
    server_pem = ca.sign_csr(make_csr(generate_key("ecdsa-p256"), "x", "y"), start, start + dt.timedelta(hours=1),
                             ["digital signature", "server auth"])
    with pytest.raises(CertificateError, match="client auth"):
        parse_certificate(server_pem)
    with pytest.raises(CertificateError, match="not a PEM certificate"):
        parse_certificate(b"garbage")


def test_kubeconfig_is_taken_apart_and_secrets_are_not_in_repr():
    config = build_kubeconfig(cluster_name="edge", server="https://127.0.0.2:6443", ca_pem=b"CA-PEM", user_name="u",
                              client_cert_pem=b"CERT", client_key_pem=b"SECRET-KEY", tls_server_name="api.edge")
    target, credential = kube.from_kubeconfig(config)
    assert target == kube.Target("https://127.0.0.2:6443", b"CA-PEM", "api.edge")
    assert (credential.cert_pem, credential.key_pem) == (b"CERT", b"SECRET-KEY")
    assert "SECRET" not in repr(credential)
    with pytest.raises(ValueError, match="credential"):
        kube.Credential(cert_pem=b"CERT")


def test_exec_credentials_are_refused_with_a_clear_message():
    from lifeline_agent.kubeconfig import ExecPlugin

    config = build_kubeconfig(cluster_name="edge", server="https://127.0.0.2:6443", ca_pem=b"CA", user_name="u",
                              exec_plugin=ExecPlugin(command="aws", args=("eks", "get-token")))
    with pytest.raises(ValueError, match="exec and auth-provider credentials are not supported"):
        kube.from_kubeconfig(config)


# --- the install invariant (lifeline_agent.admission) ----------------------------------------------------

USER, GROUP = "lifeline:h1", "lifeline:breakglass"
SKEW, MIN_LEFT = 60.0, 300.0


def _signed(ca: ClusterCA, key, *, cn: str = USER, groups: tuple[str, ...] = (GROUP,), not_before: float,
            not_after: float, ca_flag: bool | None = False, key_usage: tuple[str, ...] = ("digital_signature",),
            eku: tuple[x509.ObjectIdentifier, ...] | None = None):  # fmt: skip
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID

    subject = x509.Name([*(x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups),
                         x509.NameAttribute(NameOID.COMMON_NAME, cn)])  # fmt: skip
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca.certificate.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(dt.datetime.fromtimestamp(not_before, dt.UTC))
               .not_valid_after(dt.datetime.fromtimestamp(not_after, dt.UTC)))  # fmt: skip
    if ca_flag is not None:
        builder = builder.add_extension(x509.BasicConstraints(ca=ca_flag, path_length=None), critical=True)
    flags = dict.fromkeys(("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
                           "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only"), False)
    builder = builder.add_extension(x509.KeyUsage(**(flags | dict.fromkeys(key_usage, True))), critical=True)
    builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku or (ExtendedKeyUsageOID.CLIENT_AUTH,))),
                                    critical=False)  # fmt: skip
    return parse_certificate(builder.sign(ca.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))


@pytest.fixture(scope="module")
def cluster_ca() -> ClusterCA:
    return ClusterCA.create(key_type="ec")


def _admit(certificate, key, ca: ClusterCA, now: float, min_left: float = MIN_LEFT) -> None:
    from lifeline_agent.admission import admit
    from lifeline_agent.deadline import Wanted

    admit(certificate, key, Wanted(USER, GROUP, "ecdsa-p256", ca.cert_pem), now=now, clock_skew=SKEW,
          min_remaining=min_left)  # fmt: skip


def test_what_the_kubernetes_signer_issues_for_the_csr_is_admitted(cluster_ca):
    """The lab's signer issues for CSR_USAGES exactly what kube-controller-manager does."""
    key = generate_key("ecdsa-p256")
    now = dt.datetime.now(dt.UTC)
    pem = cluster_ca.sign_csr(make_csr(key, USER, GROUP), now - dt.timedelta(minutes=5), now + dt.timedelta(hours=1),
                              list(CSR_USAGES))  # fmt: skip
    _admit(parse_certificate(pem), key, cluster_ca, now.timestamp())


@pytest.mark.parametrize(
    "change, error, words",
    [
        ({"not_after": -1.0}, "NotValidNow", "expired at"),
        ({"not_after": 0.0}, "NotValidNow", "expired at"),  # notAfter == now: already expired
        ({"not_before": SKEW + 1, "not_after": 7200.0}, "NotValidNow", "clock skew"),
        ({"not_after": MIN_LEFT - 1}, "LifetimeTooShort", "less than the 300 s"),
        ({"ca_flag": True}, "IsCertificateAuthority", "CA:TRUE"),
        ({"key_usage": ("digital_signature", "key_encipherment")}, "WrongUsages", "key_encipherment"),
        ({"key_usage": ("digital_signature", "key_cert_sign")}, "WrongUsages", "key_cert_sign"),
        ({"eku": "server-too"}, "WrongUsages", "1.3.6.1.5.5.7.3.1"),
        ({"groups": (GROUP, "system:masters")}, "NotWanted", "system:masters"),
        ({"groups": ()}, "NotWanted", "subject O"),
        ({"cn": "admin"}, "NotWanted", "subject CN"),
        ({"other_key": True}, "WrongKey", "not for the key"),
        ({"other_ca": True}, "NotWanted", "not issued by the cluster CA"),
    ],
)
def test_each_refusal_is_a_named_certificate_error(cluster_ca, change, error, words):
    from cryptography.x509.oid import ExtendedKeyUsageOID
    from lifeline_agent import admission

    now = 1_900_000_000.0
    key = generate_key("ecdsa-p256")
    options = {"not_before": now - 300, "not_after": now + 3600}
    for name in ("not_before", "not_after"):
        if name in change:
            options[name] = now + change[name]
    for name in ("ca_flag", "key_usage", "groups", "cn"):
        if name in change:
            options[name] = change[name]
    if change.get("eku") == "server-too":
        options["eku"] = (ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH)
    signer = ClusterCA.create(key_type="ec") if change.get("other_ca") else cluster_ca
    certificate = _signed(signer, generate_key("ecdsa-p256") if change.get("other_key") else key, **options)
    with pytest.raises(CertificateError, match=words) as caught:
        _admit(certificate, key, cluster_ca, now)
    assert type(caught.value) is getattr(admission, error)


def test_clock_skew_and_minimum_lifetime_boundaries_are_admitted(cluster_ca):
    now = 1_900_000_000.0
    key = generate_key("ecdsa-p256")
    _admit(_signed(cluster_ca, key, not_before=now + SKEW, not_after=now + 3600), key, cluster_ca, now)
    _admit(_signed(cluster_ca, key, not_before=now - 10, not_after=now + MIN_LEFT), key, cluster_ca, now)
    no_basic_constraints = _signed(cluster_ca, key, not_before=now - 10, not_after=now + 5, ca_flag=None)
    _admit(no_basic_constraints, key, cluster_ca, now, min_left=0.0)  # not a CA either
