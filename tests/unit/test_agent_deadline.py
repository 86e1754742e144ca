"""The renewal deadline and the backoff: pure functions."""

from __future__ import annotations

import datetime as dt
import random
import statistics

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from lifeline_agent.deadline import Wanted, backoff_delay, mismatch, renewal_deadline
from lifeline_agent.keys import generate_key, parse_certificate

NOW = dt.datetime(2026, 11, 27, 9, 0, tzinfo=dt.UTC)


def make_ca(name: str = "kubernetes") -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate, bytes]:
    from cryptography.hazmat.primitives import serialization

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(NOW - dt.timedelta(days=1))
            .not_valid_after(NOW + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert, cert.public_bytes(serialization.Encoding.PEM)


def issue(ca_key, ca_cert, *, cn="lifeline:h1", org="lifeline:breakglass", key_type="ecdsa-p256",
          lifetime=dt.timedelta(days=7)):
    from cryptography.hazmat.primitives import serialization

    key = generate_key(key_type)
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org), x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(NOW - dt.timedelta(minutes=5))
            .not_valid_after(NOW + lifetime)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return parse_certificate(cert.public_bytes(serialization.Encoding.PEM))


def test_deadline_is_spread_over_70_to_90_percent_of_the_lifetime():
    rng = random.Random(7)
    not_before, not_after = 1_000_000.0, 1_000_000.0 + 7 * 86400
    fractions = [(renewal_deadline(not_before, not_after, rng) - not_before) / (not_after - not_before)
                 for _ in range(5000)]
    assert min(fractions) >= 0.7
    assert max(fractions) <= 0.9
    assert min(fractions) < 0.71 and max(fractions) > 0.89  # the whole interval is used
    assert statistics.mean(fractions) == pytest.approx(0.8, abs=0.01)


def test_deadline_follows_the_issued_lifetime_not_the_requested_one():
    # The signer issued 60 s (plus the 5 min backdate) although 7 days were asked for.
    deadline = renewal_deadline(100.0, 100.0 + 360.0, random.Random(1))
    assert 100.0 + 0.7 * 360 <= deadline <= 100.0 + 0.9 * 360


BACKDATE = 300.0  # the signer's notBefore is 5 minutes before it signed


@pytest.mark.parametrize("lifetime", [600.0, 3600.0, 86400.0, 365 * 86400.0])
def test_real_lifetimes_keep_the_kubelet_rule_when_received(lifetime):
    # The API's shortest lifetime is 10 minutes: its kubelet deadline is never past when it arrives.
    not_before, not_after, received = 1_000.0, 1_000.0 + BACKDATE + lifetime, 1_000.0 + BACKDATE + 0.5
    for seed in range(200):
        assert renewal_deadline(not_before, not_after, random.Random(seed), received_at=received) \
            == renewal_deadline(not_before, not_after, random.Random(seed))  # fmt: skip


def test_a_certificate_shorter_than_the_backdate_is_not_renewed_on_arrival():
    # 30 s certificates (lab): the kubelet point is 70-90 % of 330 s after notBefore, before the 300 s mark.
    not_before, received = 1_000.0, 1_000.0 + BACKDATE + 0.2
    not_after = not_before + BACKDATE + 30.0
    for seed in range(500):
        deadline = renewal_deadline(not_before, not_after, random.Random(seed), received_at=received)
        left = not_after - received
        assert received + 0.7 * left <= deadline <= received + 0.9 * left


def test_an_old_certificate_written_now_keeps_the_kubelet_rule():
    # notBefore 57 minutes ago, one hour of life, put on disk just now: 3 minutes left, due since minute 42-54.
    not_before, not_after, received = 1_000.0, 1_000.0 + 3600.0, 1_000.0 + 57 * 60.0
    for seed in range(50):
        deadline = renewal_deadline(not_before, not_after, random.Random(seed), received_at=received)
        assert deadline == renewal_deadline(not_before, not_after, random.Random(seed)) < received


def test_a_certificate_received_after_its_deadline_from_disk_renews_at_once():
    # Found on disk long after it was installed (the agent was stopped): its deadline stays in the past.
    not_before, not_after = 1_000.0, 1_000.0 + 1_000.0
    deadline = renewal_deadline(not_before, not_after, random.Random(3), received_at=1_100.0)
    assert deadline <= 1_000.0 + 0.9 * 1_000.0
    assert renewal_deadline(not_before, not_after, random.Random(3), received_at=2_000.0) \
        == renewal_deadline(not_before, not_after, random.Random(3))  # fmt: skip


def test_deadline_rejects_a_certificate_that_ends_before_it_starts():
    with pytest.raises(ValueError, match="notAfter"):
        renewal_deadline(10.0, 10.0)


def test_mismatch_none_when_the_certificate_is_what_is_wanted():
    ca_key, ca_cert, ca_pem = make_ca()
    certificate = issue(ca_key, ca_cert)
    assert mismatch(certificate, Wanted("lifeline:h1", "lifeline:breakglass", "ecdsa-p256", ca_pem)) is None


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"common_name": "lifeline:h2"}, "subject CN"),
        ({"organization": "other:group"}, "subject O"),
        ({"key_type": "rsa-2048"}, "key type"),
    ],
)
def test_mismatch_means_renew_at_once(change, words):
    ca_key, ca_cert, ca_pem = make_ca()
    certificate = issue(ca_key, ca_cert)
    wanted = {"common_name": "lifeline:h1", "organization": "lifeline:breakglass", "key_type": "ecdsa-p256",
              "ca_pem": ca_pem} | change
    reason = mismatch(certificate, Wanted(**wanted))
    assert reason is not None and words in reason


def test_mismatch_when_the_ca_changed():
    ca_key, ca_cert, _ = make_ca()
    _, _, new_ca_pem = make_ca()
    reason = mismatch(issue(ca_key, ca_cert), Wanted("lifeline:h1", "lifeline:breakglass", "ecdsa-p256", new_ca_pem))
    assert reason is not None and "CA" in reason


def test_rsa_key_types_are_told_apart():
    ca_key, ca_cert, ca_pem = make_ca()
    certificate = issue(ca_key, ca_cert, key_type="rsa-2048")
    assert certificate.key_type == "rsa-2048"
    assert mismatch(certificate, Wanted("lifeline:h1", "lifeline:breakglass", "rsa-4096", ca_pem)) is not None
    assert mismatch(certificate, Wanted("lifeline:h1", "lifeline:breakglass", "rsa-2048", ca_pem)) is None


def test_backoff_grows_exponentially_with_jitter_and_is_capped():
    rng = random.Random(3)
    assert backoff_delay(0, 10, 300, rng) == 0
    for failures in range(1, 12):
        ceiling = min(300, 10 * 2 ** (failures - 1))
        delays = [backoff_delay(failures, 10, 300, rng) for _ in range(200)]
        assert all(5 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 100  # jittered
    assert max(backoff_delay(50, 10, 300, rng) for _ in range(200)) > 250


@pytest.mark.parametrize("left", [30.0, 45.0, 60.0, 90.0, 128.0, 150.0, 300.0, 599.0, 600.0, 900.0, 7200.0])
def test_a_fresh_certificate_is_never_renewed_soon_after_it_arrives_whatever_the_draw(left):
    # Every fraction of [0.7, 0.9], evenly: a rule switched by the draw (the kubelet point just past the arrival
    # for some fractions, not for others) renewed 60 s certificates within seconds of their arrival.
    not_before, received = 1_000.0, 1_000.0 + BACKDATE + 0.5
    not_after = received + left
    for step in range(201):
        fraction = 0.7 + 0.2 * step / 200
        rng = random.Random()
        rng.uniform = lambda low, high, f=fraction: f  # type: ignore[method-assign]
        deadline = renewal_deadline(not_before, not_after, rng, received_at=received)
        assert deadline - received >= 0.5 * left, (fraction, deadline - received)
        assert deadline <= not_after - 0.1 * min(left, 600.0)
