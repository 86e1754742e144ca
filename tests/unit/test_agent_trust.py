"""The trust gate and the Region clients: which secret a step may use, when cluster.json changes, one client each."""

from __future__ import annotations

import base64
import threading
from pathlib import Path

import pytest
from lifeline_agent.contract import ClusterSecret
from lifeline_agent.region import EksCluster, RegionError, aws_client
from lifeline_agent.store import CachedCluster, ClusterStore
from lifeline_agent.trust import TrustGate, UntrustedEndpoint, differences, endpoint_identity, same_origin

from lab.pki import ClusterCA

OUTPOST = "arn:aws:outposts:us-west-2:123456789012:outpost/op-0123456789abcdef0"
ENDPOINT = "https://abc.gr7.us-west-2.eks.amazonaws.com"
CA_PEM = ClusterCA.create("kubernetes", key_type="ec").cert_pem
OTHER_CA_PEM = ClusterCA.create("impostor", key_type="ec").cert_pem


def secret(endpoint: str = ENDPOINT, ca_pem: bytes = CA_PEM, **overrides: str) -> ClusterSecret:
    fields = dict(cluster_name="prod-1", cluster_arn="arn:aws:eks:us-west-2:123456789012:cluster/prod-1",
                  endpoint=endpoint, certificate_authority_data=base64.b64encode(ca_pem).decode(),
                  kubernetes_version="1.31", platform_version="eks-local-outposts.1", outpost_arns=(OUTPOST,),
                  updated_at="2026-12-01T00:00:00Z")
    return ClusterSecret(**(fields | overrides))  # type: ignore[arg-type]


def view(value: ClusterSecret, ips: tuple[str, ...] = ("10.0.0.10",)) -> CachedCluster:
    return CachedCluster(secret=value, ips=ips, fetched_at=1.0)


def eks(endpoint: str | None = ENDPOINT, ca_pem: bytes | None = CA_PEM, status: str = "ACTIVE") -> EksCluster:
    data = base64.b64encode(ca_pem).decode() if ca_pem is not None else None
    return EksCluster(name="prod-1", status=status, endpoint=endpoint, certificate_authority_data=data)


class Region:
    """What eks:DescribeCluster answers, and how often it was asked."""

    def __init__(self, answer: EksCluster | None = None, error: str | None = None) -> None:
        self.answer, self.error, self.calls = answer or eks(), error, 0

    def __call__(self) -> EksCluster:
        self.calls += 1
        if self.error is not None:
            raise RegionError(self.error)
        return self.answer


@pytest.fixture
def store(tmp_path: Path) -> ClusterStore:
    return ClusterStore(tmp_path / "prod-1")


def test_endpoint_identity_ignores_spelling_but_not_host_or_port():
    assert endpoint_identity("https://ABC.example:443/") == endpoint_identity("https://abc.example")
    assert endpoint_identity("https://abc.example:8443") != endpoint_identity("https://abc.example")
    assert endpoint_identity("https://evil.example") != endpoint_identity("https://abc.example")


def test_same_origin_is_endpoint_and_ca_only():
    assert same_origin(secret(), secret(breakglass_group="lifeline:other"))
    assert not same_origin(secret(), secret(endpoint="https://evil.example"))
    assert not same_origin(secret(), secret(ca_pem=OTHER_CA_PEM))


def test_differences_names_what_eks_does_not_report():
    assert differences(secret(), eks()) == []
    assert differences(secret(endpoint="https://abc.gr7.us-west-2.eks.amazonaws.com:443"), eks()) == []
    [endpoint] = differences(secret(endpoint="https://evil.example"), eks())
    assert endpoint == f"endpoint https://evil.example is not EKS's {ENDPOINT}"
    [ca] = differences(secret(ca_pem=OTHER_CA_PEM), eks())
    assert ca.startswith("CA sha256 ") and secret(ca_pem=OTHER_CA_PEM).ca_sha256 in ca
    assert len(differences(secret(endpoint="https://evil.example", ca_pem=OTHER_CA_PEM), eks())) == 2
    assert differences(secret(), eks(endpoint=None, ca_pem=None, status="CREATING")) == [
        "EKS reports no endpoint (cluster status CREATING)", "EKS reports no CA (cluster status CREATING)"]
    garbage = EksCluster(name="prod-1", status="ACTIVE", endpoint=ENDPOINT, certificate_authority_data="bm9wZQ==")
    assert differences(secret(), garbage)[0].startswith("EKS reports a CA that is not usable")


def test_first_secret_confirmed_is_used_and_written_only_after_the_step_succeeded(store):
    region = Region()
    gate = TrustGate(store, region)
    fresh = view(secret())
    assert gate.accept(None, fresh) is fresh
    assert region.calls == 1
    assert store.load_cache() is None  # not before the step proved it
    gate.settle(fresh)
    assert store.load_cache() == fresh


def test_first_secret_not_confirmed_is_refused_and_nothing_is_written(store):
    gate = TrustGate(store, Region())
    with pytest.raises(UntrustedEndpoint, match="nothing was sent to https://evil.example"):
        gate.accept(None, view(secret(endpoint="https://evil.example")))
    assert store.load_cache() is None


def test_first_secret_when_eks_cannot_be_asked_is_a_region_error(store):
    gate = TrustGate(store, Region(error="eks:DescribeCluster prod-1: AccessDeniedException: denied"))
    with pytest.raises(RegionError, match="cannot confirm .* AccessDeniedException.*nothing was sent"):
        gate.accept(None, view(secret()))
    assert store.load_cache() is None


def test_same_endpoint_and_ca_need_no_confirmation_and_other_changes_are_kept_at_once(store):
    region = Region(error="must not be asked")
    gate = TrustGate(store, region)
    trusted = view(secret())
    fresh = view(secret(breakglass_group="lifeline:other"), ips=("10.0.0.11",))
    assert gate.accept(trusted, fresh) is fresh
    assert region.calls == 0
    assert store.load_cache() == fresh
    gate.settle(fresh)


def test_a_changed_endpoint_eks_does_not_report_keeps_the_trusted_view_and_ends_untrusted(store):
    trusted = view(secret())
    store.save_cache(trusted)
    before = store.path("cluster.json").read_bytes()
    gate = TrustGate(store, Region())
    assert gate.accept(trusted, view(secret(endpoint="https://evil.example", ca_pem=OTHER_CA_PEM))) is trusted
    with pytest.raises(UntrustedEndpoint) as raised:
        gate.settle(trusted)
    message = str(raised.value)
    assert "endpoint https://evil.example is not EKS's" in message
    assert f"stay on {ENDPOINT} (CA sha256 {trusted.secret.ca_sha256})" in message
    assert "CloudTrail PutSecretValue on lifeline/prod-1" in message
    assert store.path("cluster.json").read_bytes() == before
    # The genuine secret again: trusted without asking EKS, and the step is no longer untrusted.
    assert gate.accept(trusted, view(secret())).secret == trusted.secret
    gate.settle(trusted)


def test_a_changed_ca_eks_cannot_confirm_is_untrusted_with_the_reason(store):
    trusted = view(secret())
    gate = TrustGate(store, Region(error="eks:DescribeCluster prod-1: EndpointConnectionError"))
    assert gate.accept(trusted, view(secret(ca_pem=OTHER_CA_PEM))) is trusted
    with pytest.raises(UntrustedEndpoint, match="EKS could not be asked .*needs eks:DescribeCluster"):
        gate.settle(trusted)


def test_a_confirmed_change_is_written_only_when_the_step_succeeded_with_it(store):
    trusted = view(secret())
    store.save_cache(trusted)
    moved = "https://new.gr7.us-west-2.eks.amazonaws.com"
    gate = TrustGate(store, Region(eks(endpoint=moved)))
    fresh = view(secret(endpoint=moved))
    assert gate.accept(trusted, fresh) is fresh
    assert store.load_cache() == trusted
    gate.settle(trusted)  # a later step on the trusted view (the one with the change failed): nothing written
    assert store.load_cache() == trusted
    gate.settle(fresh)
    assert store.load_cache() == fresh


def test_one_client_per_service_shared_by_threads(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "unit-test-key")
    options = {"region": "us-west-2", "endpoint_url": "http://127.0.0.1:9", "timeout": 1.0}
    made: list[object] = []
    threads = [threading.Thread(target=lambda: made.append(aws_client("eks", **options))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(client) for client in made}) == 1
    assert aws_client("eks", **options) is made[0]
    assert aws_client("secretsmanager", **options) is not made[0]
    probe = aws_client("sts", **options)
    assert aws_client("sts", **{**options, "timeout": None}) is probe  # presigning: the probe's client serves
    assert aws_client("sts", **{**options, "timeout": 2.0}) is not probe
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "another-key")  # other credentials: another client
    assert aws_client("eks", **options) is not made[0]


def test_no_credentials_is_a_region_error_and_nothing_is_kept(monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    options = {"region": "us-west-2", "endpoint_url": "http://127.0.0.1:9", "timeout": 1.0}
    with pytest.raises(RegionError, match="no AWS credentials"):
        aws_client("eks", **options)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "appeared-later")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    assert aws_client("eks", **options) is aws_client("eks", **options)
