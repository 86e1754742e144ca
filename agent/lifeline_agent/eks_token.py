"""The EKS IAM token: the one implementation used by the agent, the Lambdas and the lab.

Same construction as aws-iam-authenticator and ``aws eks get-token``: a presigned STS
``GetCallerIdentity`` GET URL (valid 60 s), signed with the header ``x-k8s-aws-id: <cluster>``,
encoded as ``k8s-aws-v1.`` + unpadded base64url. The ExecCredential it goes into expires after
14 minutes, as the CLI's does.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where a client is made, so that presigning with a given client needs neither
    import boto3
    import botocore.client

TOKEN_PREFIX = "k8s-aws-v1."
CLUSTER_ID_HEADER = "x-k8s-aws-id"
URL_TIMEOUT_SECONDS = 60
TOKEN_LIFETIME = dt.timedelta(minutes=14)
EXEC_CREDENTIAL_API_VERSION = "client.authentication.k8s.io/v1beta1"


@dataclass(frozen=True)
class EksToken:
    token: str
    expiration: dt.datetime

    def exec_credential(self) -> dict[str, Any]:
        """The ExecCredential object a kubeconfig ``exec`` plugin prints."""
        return {
            "kind": "ExecCredential",
            "apiVersion": EXEC_CREDENTIAL_API_VERSION,
            "spec": {},
            "status": {
                "expirationTimestamp": self.expiration.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "token": self.token,
            },
        }

    def exec_credential_json(self) -> str:
        return json.dumps(self.exec_credential())


def sts_client(
    session: boto3.Session | None = None,
    *,
    region: str | None = None,
    endpoint_url: str | None = None,
    connect_timeout: float = 5.0,
    read_timeout: float = 10.0,
) -> botocore.client.BaseClient:
    import boto3
    import botocore.client

    session = session or boto3.Session()
    config = botocore.client.Config(
        connect_timeout=connect_timeout, read_timeout=read_timeout, retries={"max_attempts": 1}
    )
    return session.client("sts", region_name=region, endpoint_url=endpoint_url, config=config)


def get_token(
    cluster_id: str,
    *,
    session: boto3.Session | None = None,
    region: str | None = None,
    endpoint_url: str | None = None,
    client: botocore.client.BaseClient | None = None,
    now: dt.datetime | None = None,
) -> EksToken:
    """Make an EKS token for ``cluster_id`` (the cluster name, or its ``id`` for older local clusters).

    Presigning is local: no network call is made. ``endpoint_url`` (or ``AWS_ENDPOINT_URL``) decides
    the STS host the API server will call to verify the token.
    """
    if not cluster_id:
        raise ValueError("cluster_id must not be empty")
    sts = client or sts_client(session, region=region, endpoint_url=endpoint_url)

    def add_cluster_header(request: Any, **_: Any) -> None:
        request.headers[CLUSTER_ID_HEADER] = cluster_id

    events = sts.meta.events
    handler_id = f"lifeline-eks-token-{id(add_cluster_header)}"
    events.register_first("before-sign.sts.GetCallerIdentity", add_cluster_header, unique_id=handler_id)
    try:
        url = sts.generate_presigned_url(
            "get_caller_identity", Params={}, ExpiresIn=URL_TIMEOUT_SECONDS, HttpMethod="GET"
        )
    finally:
        events.unregister("before-sign.sts.GetCallerIdentity", unique_id=handler_id)
    encoded = base64.urlsafe_b64encode(url.encode("utf-8")).decode("ascii").rstrip("=")
    issued = now or dt.datetime.now(dt.UTC)
    return EksToken(token=TOKEN_PREFIX + encoded, expiration=issued + TOKEN_LIFETIME)


def decode_token(token: str) -> str:
    """Return the presigned URL inside a token; ``ValueError`` if it is not an EKS token."""
    if not token.startswith(TOKEN_PREFIX):
        raise ValueError("not an EKS token: missing k8s-aws-v1. prefix")
    payload = token[len(TOKEN_PREFIX) :]
    try:
        return base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode("utf-8")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError("not an EKS token: payload is not base64url text") from exc
