"""Waiting for a CSR's certificate: the polling logic, with the API answers given (no server needed)."""

from __future__ import annotations

import base64

import pytest
from lifeline_agent import kube


@pytest.fixture
def session():
    with kube.KubeSession(kube.Target("https://127.0.0.1:9", b"", None), kube.Credential(token="t")) as session:
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


def test_unreachable_server_is_named():
    with kube.KubeSession(kube.Target("https://127.0.0.1:9", b"", None), kube.Credential(token="t"),
                          timeout=2) as session, pytest.raises(kube.Unreachable, match="127.0.0.1:9"):
        session.read_kubernetes_service()


def test_the_pause_is_half_the_time_waited_between_1_ms_and_1_s(session, monkeypatch):
    clock = [100.0]
    pauses: list[float] = []

    def sleep(seconds: float) -> None:
        pauses.append(round(seconds, 4))
        clock[0] += seconds

    monkeypatch.setattr(kube.time, "monotonic", lambda: clock[0])
    answers(session, {"status": {}})
    with pytest.raises(kube.CsrTimeout):
        session.wait_for_certificate("c", timeout=10, sleep=sleep)
    assert pauses[:3] == [0.001, 0.001, 0.001]
    assert all(b >= a for a, b in zip(pauses[:-2], pauses[1:-1], strict=True))  # the last ends at the deadline
    assert max(pauses) == 1.0
    assert 20 <= len(pauses) <= 40  # a few dozen looks in 10 s, not thousands
    assert round(sum(pauses), 4) == 10.0


def test_the_first_looks_follow_each_other_at_once(session):
    looks: list[int] = []
    pending = {"status": {"conditions": [{"type": "Approved", "status": "True"}]}}
    issued = {"status": {"certificate": "Y2VydA=="}}

    def request(method, path, body=None):  # issued at the tenth look
        looks.append(len(pauses))
        return pending if len(looks) < 10 else issued

    pauses: list[float] = []
    session.request = request
    with pytest.raises(kube.CsrTimeout):  # no real sleeping: the pauses only count, the deadline comes at once
        session.wait_for_certificate("c", timeout=0.0, sleep=pauses.append)
    assert looks == [0]  # past its deadline it looks once and gives up
    looks.clear()
    assert session.wait_for_certificate("c", timeout=60, sleep=pauses.append) == b"cert"
    assert looks == [0] * 8 + [1, 2]  # eight looks without a pause (a busy signer's ~10 ms on loopback), then one
