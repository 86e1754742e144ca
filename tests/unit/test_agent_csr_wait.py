"""Waiting for a CSR's certificate: the polling logic, with the API answers given (no server needed)."""

from __future__ import annotations

import base64

import pytest
from lifeline_agent import kube


@pytest.fixture
def session(tmp_path):
    with kube.KubeSession(kube.Target("https://127.0.0.1:9", b"", None), kube.Credential(token="t"),
                          workdir=tmp_path) as session:
        yield session


def answers(session, *objects):
    replies = list(objects)
    session.request = lambda method, path, body=None: replies.pop(0) if len(replies) > 1 else replies[0]


def test_certificate_after_a_few_polls(session):
    pending = {"status": {"conditions": [{"type": "Approved", "status": "True"}]}}
    issued = {"status": {"conditions": pending["status"]["conditions"],
                         "certificate": base64.b64encode(b"CERT").decode()}}
    answers(session, pending, pending, issued)
    assert session.wait_for_certificate("c", timeout=5, sleep=lambda _: None) == b"CERT"


@pytest.mark.parametrize("condition", ["Denied", "Failed"])
def test_denied_or_failed_is_a_named_error_with_the_message(session, condition):
    ended = {"type": condition, "status": "True", "message": "usage not allowed"}
    answers(session, {"status": {"conditions": [ended]}})
    with pytest.raises(kube.CsrRejected, match=f"CSR c {condition}: usage not allowed"):
        session.wait_for_certificate("c", timeout=5, sleep=lambda _: None)


def test_no_certificate_within_the_bound(session):
    answers(session, {"status": {}})
    with pytest.raises(kube.CsrTimeout, match="no certificate after 0.2 s"):
        session.wait_for_certificate("c", timeout=0.2)


def test_session_files_are_private_and_removed(tmp_path):
    with kube.KubeSession(kube.Target("https://127.0.0.1:9", b"", None),
                          kube.Credential(cert_pem=b"C", key_pem=b"K"), workdir=tmp_path / "edge") as session:
        directories = list((tmp_path / "edge").glob(".session-*"))
        assert len(directories) == 1
        assert directories[0].stat().st_mode & 0o777 == 0o700
        assert (directories[0] / "client.key").stat().st_mode & 0o777 == 0o600
        assert session.target.server == "https://127.0.0.1:9"
    assert list((tmp_path / "edge").iterdir()) == []


def test_unreachable_server_is_named(tmp_path):
    with kube.KubeSession(kube.Target("https://127.0.0.1:9", b"", None), kube.Credential(token="t"),
                          workdir=tmp_path, timeout=2) as session, pytest.raises(kube.Unreachable, match="127.0.0.1:9"):
        session.read_kubernetes_service()
