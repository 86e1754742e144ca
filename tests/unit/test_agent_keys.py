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
