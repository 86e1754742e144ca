"""The lab's cluster certificate authority: serving certificates, client certificates, CSR signing."""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

CA_LIFETIME = dt.timedelta(days=3650)
SERVING_LIFETIME = dt.timedelta(days=365)
BACKDATE = dt.timedelta(minutes=5)

# Kubernetes usage names (certificates.k8s.io KeyUsage) -> X.509 extensions.
_KEY_USAGE_FLAGS = {
    "digital signature": "digital_signature",
    "signing": "digital_signature",
    "content commitment": "content_commitment",
    "key encipherment": "key_encipherment",
    "key agreement": "key_agreement",
    "data encipherment": "data_encipherment",
    "cert sign": "key_cert_sign",
    "crl sign": "crl_sign",
    "encipher only": "encipher_only",
    "decipher only": "decipher_only",
}
_EXTENDED_KEY_USAGES = {
    "client auth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "server auth": ExtendedKeyUsageOID.SERVER_AUTH,
    "code signing": ExtendedKeyUsageOID.CODE_SIGNING,
    "email protection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "timestamping": ExtendedKeyUsageOID.TIME_STAMPING,
    "ocsp signing": ExtendedKeyUsageOID.OCSP_SIGNING,
    "any": ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,
}


class CsrError(ValueError):
    """The bytes given are not a usable PEM certificate signing request."""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_private_key(key_type: str = "ec") -> PrivateKey:
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type.startswith("rsa"):
        bits = int(key_type[3:] or 2048)
        return rsa.generate_private_key(public_exponent=65537, key_size=bits)
    raise ValueError(f"unknown key type {key_type!r}: use 'ec', 'rsa2048' or 'rsa4096'")


def private_key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _key_usage(flags: Iterable[str]) -> x509.KeyUsage:
    chosen = set(flags)
    names = [
        "digital_signature",
        "content_commitment",
        "key_encipherment",
        "data_encipherment",
        "key_agreement",
        "key_cert_sign",
        "crl_sign",
        "encipher_only",
        "decipher_only",
    ]
    values = {name: name in chosen for name in names}
    if not values["key_agreement"]:
        values["encipher_only"] = values["decipher_only"] = False
    return x509.KeyUsage(**values)


def parse_csr(csr_pem: bytes) -> x509.CertificateSigningRequest:
    """Parse a PEM CSR the way Kubernetes does; ``CsrError`` with Kubernetes' message otherwise."""
    text = csr_pem.lstrip()
    if not text.startswith(b"-----BEGIN CERTIFICATE REQUEST-----"):
        raise CsrError("PEM block type must be CERTIFICATE REQUEST")
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError as exc:
        raise CsrError(f"asn1: structure error: {exc}") from exc
    if not csr.is_signature_valid:
        is_ec = isinstance(csr.public_key(), ec.EllipticCurvePublicKey)
        raise CsrError("x509: ECDSA verification failure" if is_ec else "crypto/rsa: verification error")
    return csr


@dataclass(frozen=True)
class ClusterCA:
    """A self-signed cluster CA (what EKS returns as ``certificateAuthority.data``)."""

    cert_pem: bytes
    key: PrivateKey

    @classmethod
    def create(cls, common_name: str = "kubernetes", key_type: str = "rsa2048") -> ClusterCA:
        key = new_private_key(key_type)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + CA_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(_key_usage(["digital_signature", "key_encipherment", "key_cert_sign"]), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(cert_pem=cert.public_bytes(serialization.Encoding.PEM), key=key)

    @classmethod
    def from_pem(cls, cert_pem: bytes, key_pem: bytes) -> ClusterCA:
        key = serialization.load_pem_private_key(key_pem, password=None)
        if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise ValueError("CA key must be RSA or EC")
        return cls(cert_pem=cert_pem, key=key)

    @cached_property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)

    @property
    def key_pem(self) -> bytes:
        return private_key_pem(self.key)

    def _builder(self, subject: x509.Name, public_key: object, not_before: dt.datetime,
                 not_after: dt.datetime) -> x509.CertificateBuilder:
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.certificate.subject)
            .public_key(public_key)  # type: ignore[arg-type]
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        )
        return builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False
        )

    def _sign(self, builder: x509.CertificateBuilder) -> bytes:
        return builder.sign(self.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)

    def issue_serving_cert(
        self, hosts: Sequence[str], ips: Sequence[str], lifetime: dt.timedelta = SERVING_LIFETIME
    ) -> tuple[bytes, bytes]:
        """A TLS server certificate for ``hosts`` and ``ips``: returns ``(cert_pem, key_pem)``."""
        key = new_private_key("ec")
        sans: list[x509.GeneralName] = [x509.DNSName(h) for h in dict.fromkeys(hosts)]
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in dict.fromkeys(ips)]
        now = _now()
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")])
        builder = (
            self._builder(subject, key.public_key(), now - BACKDATE, now + lifetime)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(_key_usage(["digital_signature", "key_encipherment"]), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        )
        return self._sign(builder), private_key_pem(key)

    def issue_client_cert(
        self,
        cn: str,
        groups: Sequence[str] = (),
        lifetime: dt.timedelta = SERVING_LIFETIME,
        *,
        not_before: dt.datetime | None = None,
        key_type: str = "ec",
    ) -> tuple[bytes, bytes]:
        """A client certificate (user = ``cn``, groups = O values): returns ``(cert_pem, key_pem)``."""
        key = new_private_key(key_type)
        attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups]
        subject = x509.Name([*attributes, x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        start = not_before or (_now() - BACKDATE)
        builder = (
            self._builder(subject, key.public_key(), start, start + lifetime)
            .add_extension(_key_usage(["digital_signature", "key_encipherment"]), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        )
        return self._sign(builder), private_key_pem(key)

    def sign_csr(
        self, csr_pem: bytes, not_before: dt.datetime, not_after: dt.datetime, usages: Sequence[str]
    ) -> bytes:
        """Issue a certificate for a PEM CSR with Kubernetes ``usages``; the subject is the CSR's."""
        csr = parse_csr(csr_pem)
        key_flags = [_KEY_USAGE_FLAGS[u] for u in usages if u in _KEY_USAGE_FLAGS]
        extended = [_EXTENDED_KEY_USAGES[u] for u in usages if u in _EXTENDED_KEY_USAGES]
        builder = self._builder(csr.subject, csr.public_key(), not_before, not_after)
        if key_flags:
            builder = builder.add_extension(_key_usage(key_flags), critical=True)
        if extended:
            builder = builder.add_extension(x509.ExtendedKeyUsage(extended), critical=False)
        return self._sign(builder)
