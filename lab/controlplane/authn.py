"""Authentication: X.509 client certificates and EKS IAM tokens (checked as aws-iam-authenticator does)."""

from __future__ import annotations

import datetime as dt
import json
import re
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET  # noqa: S405 - parses the lab STS's answer, a trusted loopback peer
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import NameOID
from lifeline_agent.eks_token import CLUSTER_ID_HEADER, decode_token

from .rbac_eval import AUTHENTICATED_GROUP, MASTERS_GROUP, UserInfo

STS_HOST = re.compile(r"^sts(\.[a-z0-9-]+)?\.amazonaws\.com(\.cn)?$")
TOKEN_MAX_AGE = dt.timedelta(minutes=15)
ASSUMED_ROLE = re.compile(r"^arn:(aws[a-z-]*):sts::(\d{12}):assumed-role/([^/]+)/(.+)$")
CREATOR_USERNAME = "kubernetes-admin"
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through an environment proxy


class AuthenticationError(Exception):
    """The credential was presented but is not valid (the API server answers 401)."""


def _with_authenticated(groups: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys([*groups, AUTHENTICATED_GROUP]))


def authenticate_certificate(
    cert_pem: str, ca: x509.Certificate, now: dt.datetime | None = None
) -> UserInfo:
    """User = CN, groups = O values; the certificate must be issued by ``ca`` and valid now."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem.encode("ascii"))
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise AuthenticationError(f"x509: certificate signed by unknown authority ({exc})") from exc
    moment = now or dt.datetime.now(dt.UTC)
    if not cert.not_valid_before_utc <= moment <= cert.not_valid_after_utc:
        raise AuthenticationError("x509: certificate has expired or is not yet valid")
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names:
        raise AuthenticationError("x509: certificate has no common name")
    groups = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    return UserInfo(name=str(names[0].value), groups=_with_authenticated(groups))


@dataclass(frozen=True)
class CallerIdentity:
    arn: str
    account: str
    user_id: str


def canonical_arn(arn: str) -> tuple[str, str]:
    """``(canonical ARN, session name)``: an assumed-role ARN becomes its IAM role ARN."""
    match = ASSUMED_ROLE.match(arn)
    if match:
        partition, account, role, session = match.groups()
        return f"arn:{partition}:iam::{account}:role/{role}", session
    return arn, ""


def _parse_identity(body: bytes) -> CallerIdentity:
    text = body.decode("utf-8", "replace").strip()
    if text.startswith("{"):
        result = json.loads(text)["GetCallerIdentityResponse"]["GetCallerIdentityResult"]
        return CallerIdentity(result["Arn"], result["Account"], result["UserId"])
    root = ET.fromstring(text)  # noqa: S314 - see the import
    found: dict[str, str] = {}
    for element in root.iter():
        tag = element.tag.rsplit("}", 1)[-1]
        if tag in ("Arn", "Account", "UserId") and element.text:
            found[tag] = element.text
    if len(found) != 3:
        raise AuthenticationError("STS answer has no caller identity")
    return CallerIdentity(found["Arn"], found["Account"], found["UserId"])


@dataclass
class IamTokenAuthenticator:
    """Verifies an EKS token by replaying its presigned ``GetCallerIdentity`` against ``sts_url``."""

    sts_url: str
    cluster_ids: tuple[str, ...]  # cluster name, then id: sent as x-k8s-aws-id
    allowed_hosts: tuple[str, ...]
    timeout: float
    creator_arn: str | None
    aws_auth: Callable[[], Mapping[str, Any] | None]  # the kube-system/aws-auth ConfigMap, if any
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)

    def check_url(self, url: str) -> dict[str, str]:
        parsed = urllib.parse.urlsplit(url)
        host = parsed.hostname or ""
        allowed = parsed.netloc in self.allowed_hosts or host in self.allowed_hosts
        if not allowed and not (parsed.scheme == "https" and STS_HOST.match(host)):
            raise AuthenticationError(f"unexpected hostname {parsed.netloc!r} in pre-signed URL")
        query = {k.lower(): v for k, v in urllib.parse.parse_qsl(parsed.query, keep_blank_values=True)}
        if query.get("action") != "GetCallerIdentity":
            raise AuthenticationError("unexpected action parameter in pre-signed URL")
        if query.get("version") != "2011-06-15":
            raise AuthenticationError("unexpected version parameter in pre-signed URL")
        if CLUSTER_ID_HEADER not in query.get("x-amz-signedheaders", "").split(";"):
            raise AuthenticationError(f"client did not sign the {CLUSTER_ID_HEADER} header in the pre-signed URL")
        try:
            signed_at = dt.datetime.strptime(query["x-amz-date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
        except (KeyError, ValueError) as exc:
            raise AuthenticationError("malformed X-Amz-Date parameter") from exc
        if self.clock() > signed_at + TOKEN_MAX_AGE:
            raise AuthenticationError("X-Amz-Date parameter is expired (15 minute expiration)")
        return query

    def verify(self, url: str) -> CallerIdentity:
        self.check_url(url)
        query = urllib.parse.urlsplit(url).query
        target = f"{self.sts_url.rstrip('/')}/?{query}"
        last_error: Exception | None = None
        for cluster_id in self.cluster_ids:
            request = urllib.request.Request(  # noqa: S310 - the lab's own STS URL
                target, headers={CLUSTER_ID_HEADER: cluster_id, "Accept": "application/json"}
            )
            try:
                with _DIRECT.open(request, timeout=self.timeout) as response:
                    return _parse_identity(response.read())
            except urllib.error.HTTPError as exc:
                last_error = exc
                if exc.code != 403:
                    break
            except (OSError, ValueError, KeyError, ET.ParseError) as exc:
                last_error = exc
                break
        raise AuthenticationError(f"STS verification failed: {last_error}")

    def authenticate(self, token: str) -> UserInfo:
        try:
            url = decode_token(token)
        except ValueError as exc:
            raise AuthenticationError(str(exc)) from exc
        identity = self.verify(url)
        return self.map_identity(identity)

    def map_identity(self, identity: CallerIdentity) -> UserInfo:
        canonical, session = canonical_arn(identity.arn)
        extra = {"arn": [identity.arn], "canonicalArn": [canonical], "sessionName": [session]}
        uid = f"aws-iam-authenticator:{identity.account}:{identity.user_id}"
        if self.creator_arn and canonical_arn(self.creator_arn)[0] in (identity.arn, canonical):
            return UserInfo(CREATOR_USERNAME, _with_authenticated([MASTERS_GROUP]), uid, extra)
        entry = self._lookup(canonical)
        if entry is None:
            raise AuthenticationError(f"ARN is not mapped: {canonical}")
        values = {
            "{{AccountID}}": identity.account,
            "{{SessionName}}": session.replace("@", "-"),
            "{{SessionNameRaw}}": session,
        }

        def render(template: str) -> str:
            for placeholder, value in values.items():
                template = template.replace(placeholder, value)
            return template

        username = render(str(entry.get("username") or canonical))
        groups = [render(str(g)) for g in entry.get("groups") or []]
        return UserInfo(username, _with_authenticated(groups), uid, extra)

    def _lookup(self, canonical: str) -> Mapping[str, Any] | None:
        configmap = self.aws_auth()
        if not configmap:
            return None
        data = configmap.get("data") or {}
        for key, arn_field in (("mapRoles", "rolearn"), ("mapUsers", "userarn")):
            try:
                entries = yaml.safe_load(data.get(key) or "[]") or []
            except yaml.YAMLError:
                continue
            for entry in entries if isinstance(entries, list) else []:
                if isinstance(entry, dict) and str(entry.get(arn_field, "")).lower() == canonical.lower():
                    return entry
        return None
