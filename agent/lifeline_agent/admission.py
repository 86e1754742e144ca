"""The install invariant: which client certificates may go into a kubeconfig at all.

:func:`admit` is pure; the caller then proves the kubeconfig against the API server and only then
installs it (``ClusterAgent._issue_with`` and ``_rewrite``). A refused certificate is never
installed, so the kubeconfig already on disk stays byte-identical.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from lifeline_agent.deadline import Wanted, mismatch
from lifeline_agent.keys import CSR_USAGES, CertificateError, IssuedCertificate, PrivateKey, utc

# What the signer issues for CSR_USAGES ("digital signature", "client auth"), and nothing more.
_KEY_USAGES = frozenset({"digital_signature"})
_EXTENDED_KEY_USAGES = frozenset({ExtendedKeyUsageOID.CLIENT_AUTH.dotted_string})
_KEY_USAGE_NAMES = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
                    "key_agreement", "key_cert_sign", "crl_sign")  # fmt: skip


class NotValidNow(CertificateError):
    """The certificate is expired, or not valid yet even allowing for clock skew."""


class LifetimeTooShort(CertificateError):
    """The certificate is valid, but has less than the minimum lifetime left."""


class IsCertificateAuthority(CertificateError):
    """The certificate says it is a CA (``BasicConstraints CA:TRUE``): never a break-glass credential."""


class WrongUsages(CertificateError):
    """The certificate's key usages are not exactly the requested ones."""


class WrongKey(CertificateError):
    """The certificate is for another key than the one this agent made."""


class NotWanted(CertificateError):
    """Subject (CN, the single O), key type or issuer differ from what this host asked for."""


def admit(certificate: IssuedCertificate, key: PrivateKey, wanted: Wanted, *, now: float, clock_skew: float,
          min_remaining: float) -> None:  # fmt: skip
    """Refuse ``certificate`` (a :class:`CertificateError` subclass naming why) unless it may be installed."""
    if problem := validity_problem(certificate, now=now, clock_skew=clock_skew):
        raise NotValidNow(problem)
    if certificate.not_after - now < min_remaining:
        raise LifetimeTooShort(f"the certificate has {certificate.not_after - now:.0f} s left, "
                               f"less than the {min_remaining:g} s required")  # fmt: skip
    _not_a_ca(certificate.certificate)
    _exact_usages(certificate.certificate)
    if not certificate.matches_key(key):
        raise WrongKey("the certificate is not for the key this agent made")
    if problem := mismatch(certificate, wanted):
        raise NotWanted(f"the certificate is not what was asked for: {problem}")


def validity_problem(certificate: IssuedCertificate, *, now: float, clock_skew: float) -> str | None:
    """Why ``certificate`` is not valid at ``now`` (its notBefore may be up to ``clock_skew`` ahead), or ``None``."""
    if certificate.not_after <= now:
        return f"the certificate expired at {utc(certificate.not_after)}"
    if certificate.not_before > now + clock_skew:
        return (f"the certificate is valid only from {utc(certificate.not_before)}, "
                f"more than {clock_skew:g} s (the tolerated clock skew) from now")  # fmt: skip
    return None


def _not_a_ca(certificate: x509.Certificate) -> None:
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return
    if constraints.ca:
        raise IsCertificateAuthority("the certificate is a CA (BasicConstraints CA:TRUE)")


def _exact_usages(certificate: x509.Certificate) -> None:
    requested = ", ".join(CSR_USAGES)
    extensions = certificate.extensions
    try:
        key_usage = extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        raise WrongUsages(f"the certificate has no key usage extension; requested: {requested}") from None
    try:
        extended = extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        raise WrongUsages(f"the certificate has no extended key usage extension; requested: {requested}") from None
    flags = {name for name in _KEY_USAGE_NAMES if getattr(key_usage, name)}
    purposes = {purpose.dotted_string for purpose in extended}
    if flags != _KEY_USAGES or purposes != _EXTENDED_KEY_USAGES:
        raise WrongUsages(f"the certificate carries key usages {sorted(flags)} and extended key usages "
                          f"{sorted(purposes)}; requested exactly: {requested}")  # fmt: skip
