"""The pure parts of ``lifeline-agent grant``: names, lifetimes, who asked, the ledger, the ``[grant]`` settings."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from lifeline_agent.config import ConfigError, parse_config
from lifeline_agent.grant import (
    CertificateTooLong,
    InvalidUserName,
    ReservedUserName,
    TtlOutOfRange,
    check_lifetime,
    parse_ttl,
    validate_user_name,
)
from lifeline_agent.keys import IssuedCertificate, parse_certificate
from lifeline_agent.ledger import Grant, Ledger, LedgerError
from lifeline_agent.requester import Requester


@pytest.mark.parametrize("name", ["alice", "j.doe", "bob-2", "ops_user", "a", "x" * 64])
def test_plain_user_names_are_accepted(name: str) -> None:
    assert validate_user_name(name) == name


@pytest.mark.parametrize("name", ["system:admin", "system:masters", "SYSTEM:admin", "system-controller", "system",
                                  "lifeline:host-1", "lifeline", "admin", "root", "kubernetes"])  # fmt: skip
def test_system_and_lifeline_identities_are_reserved(name: str) -> None:
    with pytest.raises(ReservedUserName, match="reserved"):
        validate_user_name(name)


@pytest.mark.parametrize("name", ["", "Alice", "alice smith", "alice:x", "-alice", "alice-", "a/b", "../etc",
                                  "x" * 65, "alice\n", "al\x00ice", "élise", "lifeline-user:alice"])  # fmt: skip
def test_anything_else_is_not_a_plain_user_name(name: str) -> None:
    with pytest.raises(InvalidUserName, match="plain user name|reserved"):
        validate_user_name(name)


def test_ttl_from_the_api_minimum_to_the_configured_maximum() -> None:
    assert parse_ttl(None, 3600) == 3600
    assert parse_ttl("10m", 3600) == 600
    assert parse_ttl("1h", 3600) == 3600
    assert parse_ttl("900", 3600) == 900
    for too_short in ("5m", "599", "0"):
        with pytest.raises(TtlOutOfRange, match="10 minutes"):
            parse_ttl(too_short, 3600)
    with pytest.raises(TtlOutOfRange, match="grant.max_ttl"):
        parse_ttl("61m", 3600)
    for garbage in ("", "soon", "1w", "-10m", "nan"):
        with pytest.raises(TtlOutOfRange, match="not a duration"):
            parse_ttl(garbage, 3600)


def test_the_requester_is_the_user_behind_sudo_only_when_root_runs_it() -> None:
    me = Requester.of_this_process({"SUDO_UID": "4242", "SUDO_GID": "4242"})
    if os.getuid() == 0:
        assert (me.uid, me.gid) == (4242, 4242)
    else:  # SUDO_* of a non-root process are just environment: not believed
        assert (me.uid, me.gid) == (os.getuid(), os.getgid())
    assert str(me.uid) in str(me)
    assert Requester.of_this_process({"SUDO_UID": "0; rm", "SUDO_GID": "x"}).uid == os.getuid()


def _grant(user: str, not_after: float) -> Grant:
    return Grant(cluster="edge-1", user=f"lifeline-user:{user}", group="lifeline:operators",
                 requested_by="ops (uid 1000)", serial="1f", fingerprint_sha256="ab" * 32, not_before=0.0,
                 not_after=not_after, issued_at=1.0, output="/home/ops/x.kubeconfig", server="https://10.0.0.1:443",
                 csr="lifeline-grant-0a0b")  # fmt: skip


def test_the_ledger_records_grants_atomically_and_privately(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path)
    assert ledger.grants() == []
    with ledger.locked():
        ledger.record(_grant("alice", 100.0))
        ledger.record(_grant("bob", 200.0))
    assert [g.user for g in ledger.grants()] == ["lifeline-user:alice", "lifeline-user:bob"]
    assert [g.state(150.0) for g in ledger.grants()] == ["expired", "active"]
    assert stat.S_IMODE((tmp_path / "grants.json").stat().st_mode) == 0o600
    assert not list(tmp_path.glob(".grants.json.*"))  # no temp file left


def test_concurrent_grants_are_all_recorded(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path)

    def grant(index: int) -> None:
        with ledger.locked():
            ledger.record(_grant(f"user{index}", 10.0))

    threads = [threading.Thread(target=grant, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(g.user for g in ledger.grants()) == sorted(f"lifeline-user:user{i}" for i in range(8))


@pytest.mark.parametrize("content", [b"{", b"[]", b'{"grants": {}}', b'{"grants": [{"user": 1}]}',
                                     json.dumps({"grants": [dict(vars(_grant("a", 1.0)), not_after="x")]}).encode()])
def test_a_corrupt_ledger_is_named(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "grants.json").write_bytes(content)
    with pytest.raises(LedgerError, match="grants.json"):
        Ledger(tmp_path).grants()
    with pytest.raises(LedgerError):
        Ledger(tmp_path).check_writable()  # refused before anything is issued, not after


def _config(tmp_path: Path, grant: dict[str, object], **top: object) -> object:
    document = {"clusters": ["edge-1"], "host_id": "h1", "state_dir": str(tmp_path), "grant": grant, **top}
    return parse_config(document, tmp_path / "agent.toml")


def test_grant_settings_default_and_bounds(tmp_path: Path) -> None:
    settings = _config(tmp_path, {}).grant  # type: ignore[attr-defined]
    assert (settings.group, settings.max_ttl) == ("lifeline:operators", 3600)
    settings = _config(tmp_path, {"group": "ops:people", "max_ttl": "8h"}).grant  # type: ignore[attr-defined]
    assert (settings.group, settings.max_ttl) == ("ops:people", 8 * 3600)


@pytest.mark.parametrize(("grant", "top", "key"), [
    ({"group": "system:masters"}, {}, "grant.group"),
    ({"group": "lifeline:agents"}, {}, "grant.group"),
    ({"group": "lifeline:breakglass"}, {}, "grant.group"),
    ({"group": "ops:bg"}, {"breakglass_group": "ops:bg"}, "grant.group"),
    ({"group": "bad group"}, {}, "grant.group"),
    ({"max_ttl": "5m"}, {}, "grant.max_ttl"),
    ({"max_ttl": "30d"}, {}, "grant.max_ttl"),
    ({"ttl": "1h"}, {}, "grant.ttl"),
])  # fmt: skip
def test_bad_grant_settings_are_named(tmp_path: Path, grant: dict[str, object], top: dict[str, object],
                                      key: str) -> None:  # fmt: skip
    with pytest.raises(ConfigError, match=key):
        _config(tmp_path, grant, **top)


def _certificate_valid_for(seconds: float, now: float) -> IssuedCertificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lifeline-user:alice")])
    started = dt.datetime.fromtimestamp(now - 300, dt.UTC)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(started)
                   .not_valid_after(dt.datetime.fromtimestamp(now + seconds, dt.UTC))
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                   .sign(key, hashes.SHA256()))  # fmt: skip
    return parse_certificate(certificate.public_bytes(serialization.Encoding.PEM))


def test_a_certificate_outliving_the_ttl_asked_for_is_refused() -> None:
    now = 1_800_000_000.0
    check_lifetime(_certificate_valid_for(1800, now), now=now, ttl=1800, clock_skew=60)
    check_lifetime(_certificate_valid_for(1850, now), now=now, ttl=1800, clock_skew=60)  # within the skew
    with pytest.raises(CertificateTooLong, match="longer than the 1800 s asked for"):
        check_lifetime(_certificate_valid_for(365 * 86400, now), now=now, ttl=1800, clock_skew=60)
