"""EKS token checks and aws-auth mapping as aws-iam-authenticator does them (pure logic, no network)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import boto3
import pytest
from lifeline_agent.eks_token import get_token

from lab.controlplane.authn import (
    AuthenticationError,
    CallerIdentity,
    IamTokenAuthenticator,
    _parse_identity,
    canonical_arn,
)

ACCOUNT = "111122223333"
SESSION = boto3.Session(aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret", region_name="us-west-2")
MAP_ROLES = f"""
- rolearn: arn:aws:iam::{ACCOUNT}:role/Ops
  username: ops:{{{{SessionName}}}}
  groups: [lifeline:ops, "acct:{{{{AccountID}}}}"]
- rolearn: arn:aws:iam::{ACCOUNT}:role/raw
  username: "{{{{SessionNameRaw}}}}"
"""
MAP_USERS = f"""
- userarn: arn:aws:iam::{ACCOUNT}:user/bob
  username: bob
  groups: [system:masters]
"""


def authenticator(configmap: dict[str, Any] | None = None, creator: str | None = None,
                  now: dt.datetime | None = None) -> IamTokenAuthenticator:
    return IamTokenAuthenticator(
        sts_url="http://127.0.0.1:9", cluster_ids=("demo",), allowed_hosts=("127.0.0.1:4566",), timeout=1.0,
        creator_arn=creator, aws_auth=lambda: configmap,
        clock=(lambda: now) if now else (lambda: dt.datetime.now(dt.UTC)),
    )


def presigned(endpoint: str) -> str:
    from lifeline_agent.eks_token import decode_token

    return decode_token(get_token("demo", session=SESSION, endpoint_url=endpoint).token)


def test_url_from_allowed_hosts_passes() -> None:
    query = authenticator().check_url(presigned("http://127.0.0.1:4566"))
    assert query["action"] == "GetCallerIdentity"
    authenticator().check_url(presigned("https://sts.us-west-2.amazonaws.com"))
    authenticator().check_url(presigned("https://sts.amazonaws.com"))


@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:4567", "https://sts.evil.example.com",
                                      "http://sts.amazonaws.com", "https://sts.amazonaws.com.evil.example"])
def test_other_hosts_are_rejected(endpoint: str) -> None:
    with pytest.raises(AuthenticationError, match="unexpected hostname"):
        authenticator().check_url(presigned(endpoint))


@pytest.mark.parametrize(("old", "new", "error"), [
    ("Action=GetCallerIdentity", "Action=AssumeRole", "action"),
    ("Version=2011-06-15", "Version=2020-01-01", "version"),
    ("x-k8s-aws-id", "x-other", "did not sign"),
])
def test_query_parameters_are_checked(old: str, new: str, error: str) -> None:
    url = presigned("http://127.0.0.1:4566")
    assert old in url
    with pytest.raises(AuthenticationError, match=error):
        authenticator().check_url(url.replace(old, new))


def test_token_older_than_15_minutes_is_rejected() -> None:
    url = presigned("http://127.0.0.1:4566")
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=16)
    with pytest.raises(AuthenticationError, match="expired"):
        authenticator(now=later).check_url(url)


def test_assumed_role_arn_becomes_role_arn() -> None:
    assert canonical_arn(f"arn:aws:sts::{ACCOUNT}:assumed-role/Ops/alice") == (
        f"arn:aws:iam::{ACCOUNT}:role/Ops", "alice")
    assert canonical_arn(f"arn:aws:iam::{ACCOUNT}:user/bob") == (f"arn:aws:iam::{ACCOUNT}:user/bob", "")


def identity(arn: str) -> CallerIdentity:
    return CallerIdentity(arn, ACCOUNT, "AROAEXAMPLE")


def test_map_roles_with_templates() -> None:
    auth = authenticator({"data": {"mapRoles": MAP_ROLES, "mapUsers": MAP_USERS}})
    user = auth.map_identity(identity(f"arn:aws:sts::{ACCOUNT}:assumed-role/Ops/alice@example.com"))
    assert user.name == "ops:alice-example.com"
    assert user.groups == ("lifeline:ops", f"acct:{ACCOUNT}", "system:authenticated")
    assert user.uid == f"aws-iam-authenticator:{ACCOUNT}:AROAEXAMPLE"
    raw = auth.map_identity(identity(f"arn:aws:sts::{ACCOUNT}:assumed-role/raw/alice@example.com"))
    assert raw.name == "alice@example.com"


def test_map_users() -> None:
    auth = authenticator({"data": {"mapUsers": MAP_USERS}})
    assert auth.map_identity(identity(f"arn:aws:iam::{ACCOUNT}:user/bob")).name == "bob"


@pytest.mark.parametrize("configmap", [None, {"data": {}}, {"data": {"mapRoles": "{not: [valid"}},
                                       {"data": {"mapRoles": MAP_ROLES}}])
def test_unmapped_principal_is_refused(configmap: dict[str, Any] | None) -> None:
    with pytest.raises(AuthenticationError, match="not mapped"):
        authenticator(configmap).map_identity(identity(f"arn:aws:iam::{ACCOUNT}:user/mallory"))


def test_creator_is_admin_as_role_or_assumed_role() -> None:
    creator = f"arn:aws:iam::{ACCOUNT}:role/creator"
    auth = authenticator(None, creator=creator)
    for arn in (f"arn:aws:sts::{ACCOUNT}:assumed-role/creator/s1", creator):
        user = auth.map_identity(identity(arn))
        assert (user.name, user.groups) == ("kubernetes-admin", ("system:masters", "system:authenticated"))


def test_moto_xml_and_json_answers_parse() -> None:
    xml = (b'<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
           b"<GetCallerIdentityResult><Arn>arn:aws:iam::123456789012:user/moto</Arn>"
           b"<UserId>AKIAEXAMPLE</UserId><Account>123456789012</Account></GetCallerIdentityResult>"
           b"</GetCallerIdentityResponse>")
    assert _parse_identity(xml) == CallerIdentity("arn:aws:iam::123456789012:user/moto", "123456789012",
                                                  "AKIAEXAMPLE")
    js = (b'{"GetCallerIdentityResponse": {"GetCallerIdentityResult": {"Arn": "a", "Account": "1", '
          b'"UserId": "u"}}}')
    assert _parse_identity(js) == CallerIdentity("a", "1", "u")
    with pytest.raises(AuthenticationError):
        _parse_identity(b"<Error><Code>InvalidClientTokenId</Code></Error>")
