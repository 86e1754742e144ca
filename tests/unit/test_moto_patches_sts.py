"""The EKS token's presigned STS GetCallerIdentity against the lab Region: routed to STS, expiry and
signature (incl. the signed x-k8s-aws-id) checked as on AWS."""

from __future__ import annotations

import datetime as dt
import urllib.error
import urllib.request
from typing import Any

import botocore.auth
import pytest
from lifeline_agent import eks_token

from lab.region.moto_patches import PresignError, verify_presigned_sts_get


def _call_sts(url: str, cluster: str) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"x-k8s-aws-id": cluster})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _token_url(lab: Any, cluster: str, principal: Any = None) -> str:
    session = lab.boto3_session(principal)
    token = eks_token.get_token(cluster, session=session, region="us-west-2", endpoint_url=lab.region_url)
    return eks_token.decode_token(token.token)


def test_valid_token_returns_the_signers_identity(lab: Any) -> None:
    status, body = _call_sts(_token_url(lab, "c1"), "c1")
    assert status == 200
    assert f"<Arn>{lab.creator.arn}</Arn>" in body
    assert "<Account>123456789012</Account>" in body


def test_agent_principal_is_told_apart_from_the_creator(lab: Any) -> None:
    status, body = _call_sts(_token_url(lab, "c1", lab.agent_principal), "c1")
    assert status == 200
    assert f"<Arn>{lab.agent_principal.arn}</Arn>" in body


def test_token_for_another_cluster_fails_the_signature(lab: Any) -> None:
    status, body = _call_sts(_token_url(lab, "cluster-a"), "cluster-b")
    assert status == 403
    assert "<Code>SignatureDoesNotMatch</Code>" in body


def test_tampered_signature_is_rejected(lab: Any) -> None:
    url = _token_url(lab, "c1")
    head, _, signature = url.rpartition("X-Amz-Signature=")
    forged = head + "X-Amz-Signature=" + ("0" if signature[0] != "0" else "1") + signature[1:]
    status, body = _call_sts(forged, "c1")
    assert status == 403 and "SignatureDoesNotMatch" in body


def test_expired_token_is_rejected(lab: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    signed_long_ago = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(minutes=2)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: signed_long_ago)
    url = _token_url(lab, "c1")
    monkeypatch.undo()
    status, body = _call_sts(url, "c1")
    assert status == 403
    assert "<Code>ExpiredToken</Code>" in body


def test_assumed_role_credentials_map_to_the_assumed_role(lab: Any) -> None:
    iam = lab.client("iam")
    role_name = "lab-test-assumable"
    try:
        role_arn = iam.get_role(RoleName=role_name)["Role"]["Arn"]
    except iam.exceptions.NoSuchEntityException:
        role_arn = iam.create_role(RoleName=role_name, AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    creds = lab.client("sts").assume_role(RoleArn=role_arn, RoleSessionName="breakglass")["Credentials"]
    from lab.lab import Principal

    principal = Principal("assumed", role_arn, creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"])
    status, body = _call_sts(_token_url(lab, "c1", principal), "c1")
    assert status == 200
    assert f"assumed-role/{role_name}/breakglass" in body
    status, _ = _call_sts(_token_url(lab, "c1", principal), "c2")
    assert status == 403


def test_incomplete_presigned_url_is_a_named_error() -> None:
    with pytest.raises(PresignError) as caught:
        verify_presigned_sts_get("GET", "127.0.0.1:1", "/", "Action=GetCallerIdentity&X-Amz-Credential=x", {})
    assert caught.value.code == "IncompleteSignature"
