"""When to renew: pure functions, the kubelet certificate manager's rules.

- Deadline: ``notBefore + U(0.7, 0.9) x (notAfter - notBefore)``, from the *issued* certificate. A freshly
  signed certificate whose earliest such point comes less than half of what is left of it after it arrived
  (the lab's short certificates, where the signer's 5-minute backdate is most of the lifetime) gets the same
  fraction of what was left at arrival instead, whatever the draw, so it is never renewed within seconds of
  arriving. Every real lifetime (10 minutes or more) keeps the kubelet's rule.
- At once when the certificate no longer matches what is wanted (subject, key type, CA).
- Failures back off exponentially with full jitter, capped.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from lifeline_agent.keys import IssuedCertificate

LOW, HIGH = 0.7, 0.9
# kube-controller-manager's signer backdates notBefore by 5 minutes; with a minute of clock skew, a certificate
# received up to 6 minutes after its notBefore was signed for this request. One received later is an old one
# (copied in, restored from a backup): the kubelet's rule applies to it unchanged.
FRESH_AFTER_NOT_BEFORE = 360.0


@dataclass(frozen=True)
class Wanted:
    """What a certificate of this host must look like."""

    common_name: str
    organization: str
    key_type: str
    ca_pem: bytes


def renewal_deadline(not_before: float, not_after: float, rng: random.Random | None = None, *,
                     received_at: float | None = None) -> float:  # fmt: skip
    """A random point in [70 %, 90 %] of the certificate's lifetime (epoch seconds), or of what was left of it
    at ``received_at`` for a freshly signed certificate whose kubelet window starts too soon after it arrived.
    Which of the two depends on the certificate only, never on the draw: a rule switched by the draw would
    jump from the end of one window to the start of the other, right at the arrival."""
    if not_after <= not_before:
        raise ValueError("certificate notAfter is not after notBefore")
    fraction = (rng or random).uniform(LOW, HIGH)
    if received_at is not None and received_at - not_before <= FRESH_AFTER_NOT_BEFORE:
        left = not_after - received_at
        if left > 0 and not_before + LOW * (not_after - not_before) - received_at < left / 2:
            return received_at + fraction * left
    return not_before + fraction * (not_after - not_before)


def mismatch(certificate: IssuedCertificate, wanted: Wanted) -> str | None:
    """Why ``certificate`` must be replaced at once, or ``None`` when it is what is wanted."""
    if certificate.common_name != wanted.common_name:
        return f"subject CN {certificate.common_name!r} is not {wanted.common_name!r}"
    if certificate.organizations != (wanted.organization,):
        return f"subject O {list(certificate.organizations)} is not [{wanted.organization!r}]"
    if certificate.key_type != wanted.key_type:
        return f"key type {certificate.key_type} is not {wanted.key_type}"
    if not certificate.signed_by(wanted.ca_pem):
        return "the certificate was not issued by the cluster CA"
    return None


def backoff_delay(failures: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Delay after ``failures`` consecutive failures (>= 1): uniform in [base/2, min(cap, base x 2^(n-1))]."""
    if failures < 1:
        return 0.0
    ceiling = min(cap, base * 2 ** min(failures - 1, 32))
    return (rng or random).uniform(min(base, ceiling) / 2, ceiling)
