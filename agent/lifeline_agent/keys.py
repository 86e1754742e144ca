"""Private keys made on this host, the CSR sent for them, and reading back the issued certificate."""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
# Kubernetes usages for signer kubernetes.io/kube-apiserver-client (DESIGN §2).
CSR_USAGES = ("digital signature", "client auth")


class CertificateError(ValueError):
    """A certificate or key is unusable: unparsable, not for client auth, or not matching its key."""


def generate_key(key_type: str) -> PrivateKey:
    """A new private key: ``ecdsa-p256``, ``rsa-2048`` or ``rsa-4096``."""
    if key_type == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type in ("rsa-2048", "rsa-4096"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(key_type[4:]))
    raise ValueError(f"unknown key type {key_type!r}")


def key_type_of(key: PrivateKey | x509.Certificate) -> str:
    public = key.public_key()
    if isinstance(public, ec.EllipticCurvePublicKey) and isinstance(public.curve, ec.SECP256R1):
        return "ecdsa-p256"
    if isinstance(public, rsa.RSAPublicKey):
        return f"rsa-{public.key_size}"
    return type(public).__name__


def key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())  # fmt: skip


def load_key(pem: bytes) -> PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise CertificateError("the private key is not an unencrypted PEM key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise CertificateError(f"unsupported private key type {type(key).__name__}")
    return key


def make_csr(key: PrivateKey, common_name: str, organization: str) -> bytes:
    """PEM CSR with subject ``CN=<common_name>, O=<organization>``."""
    subject = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])  # fmt: skip
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class IssuedCertificate:
    """What the agent needs to know about a client certificate."""

    pem: bytes
    common_name: str
    organizations: tuple[str, ...]
    not_before: float
    not_after: float
    key_type: str
    issuer: x509.Name
    certificate: x509.Certificate

    @property
    def fingerprint(self) -> bytes:
        """SHA-256 of the DER certificate: tells two certificates apart even when their times are equal."""
        return self.certificate.fingerprint(hashes.SHA256())

    @property
    def lifetime(self) -> float:
        return self.not_after - self.not_before

    def expired(self, now: float) -> bool:
        return now >= self.not_after

    def signed_by(self, ca_pem: bytes) -> bool:
        """True when one of the CA certificates in ``ca_pem`` issued this certificate."""
        return _issued_by(self.pem, ca_pem)

    def matches_key(self, key: PrivateKey) -> bool:
        spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        return self.certificate.public_key().public_bytes(*spki) == key.public_key().public_bytes(*spki)


@functools.lru_cache(maxsize=64)  # each step reads the installed certificate: two per cluster, one new
def parse_certificate(pem: bytes) -> IssuedCertificate:
    """Parse the first certificate of ``pem``; :class:`CertificateError` when it is not a client certificate."""
    try:
        certificate = x509.load_pem_x509_certificates(pem)[0]
    except (ValueError, IndexError):
        raise CertificateError("not a PEM certificate") from None
    try:
        usages = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        if ExtendedKeyUsageOID.CLIENT_AUTH not in usages:
            raise CertificateError("the certificate is not for client authentication")
    except x509.ExtensionNotFound:
        raise CertificateError("the certificate has no extended key usage (client auth)") from None
    subject = certificate.subject
    names = [str(a.value) for a in subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return IssuedCertificate(
        pem=pem,
        common_name=names[0] if names else "",
        organizations=tuple(str(a.value) for a in subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)),
        not_before=certificate.not_valid_before_utc.timestamp(),
        not_after=certificate.not_valid_after_utc.timestamp(),
        key_type=key_type_of(certificate),
        issuer=certificate.issuer,
        certificate=certificate,
    )


@functools.lru_cache(maxsize=64)  # asked at each step about the installed certificate and the cluster CA
def _issued_by(pem: bytes, ca_pem: bytes) -> bool:
    try:
        certificate = x509.load_pem_x509_certificates(pem)[0]
        authorities = x509.load_pem_x509_certificates(ca_pem)
    except (ValueError, IndexError):
        return False
    for authority in authorities:
        try:
            certificate.verify_directly_issued_by(authority)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return True
    return False


def utc(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
