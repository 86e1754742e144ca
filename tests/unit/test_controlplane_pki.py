"""The lab cluster CA (lab.pki): what it issues and what it refuses."""

from __future__ import annotations

import datetime as dt
import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from lab.pki import ClusterCA, CsrError, parse_csr


@pytest.fixture(scope="module")
def ca() -> ClusterCA:
    return ClusterCA.create("kubernetes")


def test_ca_is_a_self_signed_rsa_2048_ca(ca: ClusterCA) -> None:
    cert = ca.certificate
    assert cert.subject == cert.issuer
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    public_key = cert.public_key()
    assert isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size == 2048
    cert.verify_directly_issued_by(cert)


def test_ca_round_trips_through_pem(ca: ClusterCA) -> None:
    again = ClusterCA.from_pem(ca.cert_pem, ca.key_pem)
    cert_pem, _ = again.issue_client_cert("x")
    x509.load_pem_x509_certificate(cert_pem).verify_directly_issued_by(ca.certificate)
    assert ca.key_pem.startswith(b"-----BEGIN " b"PRIVATE KEY-----")


def test_serving_certificate_names(ca: ClusterCA) -> None:
    cert_pem, key_pem = ca.issue_serving_cert(["api.example", "localhost", "api.example"], ["127.0.0.2", "::1"])
    cert = x509.load_pem_x509_certificate(cert_pem)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["api.example", "localhost"]
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.2"),
                                                         ipaddress.ip_address("::1")]
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH]
    assert serialization.load_pem_private_key(key_pem, None)


def test_client_certificate_subject_and_validity(ca: ClusterCA) -> None:
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    cert_pem, _ = ca.issue_client_cert("lab:admin", ["system:masters", "ops"], dt.timedelta(days=2),
                                       not_before=start)
    cert = x509.load_pem_x509_certificate(cert_pem)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "lab:admin"
    assert [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == [
        "system:masters", "ops"]
    assert (cert.not_valid_before_utc, cert.not_valid_after_utc) == (start, start + dt.timedelta(days=2))


def test_sign_csr_copies_subject_and_sets_usages(ca: ClusterCA) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lifeline:h")])
    csr_pem = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256()).public_bytes(
        serialization.Encoding.PEM)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    cert = x509.load_pem_x509_certificate(
        ca.sign_csr(csr_pem, now, now + dt.timedelta(hours=1), ["digital signature", "client auth"]))
    assert cert.subject == subject
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH]


def test_parse_csr_refuses_garbage_and_bad_signatures(ca: ClusterCA) -> None:
    with pytest.raises(CsrError, match="PEM block type must be CERTIFICATE REQUEST"):
        parse_csr(b"hello")
    with pytest.raises(CsrError, match="asn1"):
        parse_csr(b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    csr = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")])).sign(key, hashes.SHA256())
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0xFF  # corrupt the signature
    tampered = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(CsrError, match="verification error"):
        parse_csr(tampered)


def test_unknown_key_type_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown key type"):
        ClusterCA.create("x", key_type="dsa")
