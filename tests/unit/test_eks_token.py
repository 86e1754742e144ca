import base64
import datetime as dt
from urllib.parse import parse_qs, urlparse

import pytest
from lifeline_agent import eks_token


@pytest.fixture(autouse=True)
def _credentials(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)


def test_token_is_presigned_get_caller_identity_with_cluster_header():
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    token = eks_token.get_token("my-cluster", region="us-west-2", now=now)
    assert token.token.startswith("k8s-aws-v1.")
    assert "=" not in token.token
    url = urlparse(eks_token.decode_token(token.token))
    query = parse_qs(url.query)
    assert url.hostname == "sts.us-west-2.amazonaws.com"
    assert query["Action"] == ["GetCallerIdentity"]
    assert query["X-Amz-Expires"] == ["60"]
    assert "x-k8s-aws-id" in query["X-Amz-SignedHeaders"][0].split(";")
    assert query["X-Amz-Credential"][0].startswith("AKIDEXAMPLE/")
    assert token.expiration == now + dt.timedelta(minutes=14)


def test_exec_credential_shape():
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    cred = eks_token.get_token("c", region="us-west-2", now=now).exec_credential()
    assert cred["kind"] == "ExecCredential"
    assert cred["apiVersion"] == "client.authentication.k8s.io/v1beta1"
    assert cred["status"]["expirationTimestamp"] == "2026-01-01T00:14:00Z"


def test_endpoint_url_decides_the_sts_host():
    token = eks_token.get_token("c", region="us-west-2", endpoint_url="http://127.0.0.1:4566")
    assert eks_token.decode_token(token.token).startswith("http://127.0.0.1:4566/?Action=GetCallerIdentity")


def test_header_handler_does_not_leak_into_later_calls():
    client = eks_token.sts_client(region="us-west-2")
    first = eks_token.decode_token(eks_token.get_token("one", client=client).token)
    plain = client.generate_presigned_url("get_caller_identity", Params={}, ExpiresIn=60)
    assert "x-k8s-aws-id" in first
    assert "x-k8s-aws-id" not in plain


@pytest.mark.parametrize("bad", ["", "k8s-aws-v2.abc", "Bearer x"])
def test_decode_rejects_non_tokens(bad):
    with pytest.raises(ValueError):
        eks_token.decode_token(bad)


def test_empty_cluster_id_rejected():
    with pytest.raises(ValueError):
        eks_token.get_token("", region="us-west-2")


def test_decode_roundtrip_padding():
    url = "https://sts.amazonaws.com/?a=1"
    encoded = "k8s-aws-v1." + base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")
    assert eks_token.decode_token(encoded) == url
