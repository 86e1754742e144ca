"""The Region side the agent uses while the link is up: Secrets Manager (``lifeline/<cluster>``), EKS, STS and
CloudWatch (the readiness metrics).

Clients use the standard credential chain (botocore's, the one boto3 uses; the session from
:mod:`lifeline_agent.aws_session`), ``aws_endpoint_url`` when configured (VPC endpoints, the lab) and short
timeouts without retries: the caller decides when to try again.
One client per service (and timeout) is made on first use and kept for the life of the process: the link
probe's STS client also presigns the EKS tokens. botocore clients are thread-safe; the session that makes
them is not, so clients are made under a lock. botocore is imported on the first call, not with this module,
and boto3 not at all (its resource layer and s3transfer cost ~3 MiB the agent has no use for).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any

from lifeline_agent.aws_session import new_session
from lifeline_agent.contract import SECRET_PREFIX, ClusterSecret, secret_name

# The environment settings that choose the credentials: a process that changes them (a test) gets new clients.
_CREDENTIAL_SETTINGS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                        "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE", "AWS_ROLE_ARN",
                        "AWS_WEB_IDENTITY_TOKEN_FILE")  # fmt: skip
_lock = threading.Lock()
_token_lock = threading.Lock()
_sessions: dict[tuple[str | None, ...], Any] = {}
_clients: dict[tuple[Any, ...], Any] = {}
LOCAL_TIMEOUT = 10.0  # seconds, for a client made for local work only (it may later serve network calls too)


class RegionError(Exception):
    """A call to the Region failed (unreachable, denied, no credentials, or the secret is missing)."""


@dataclass(frozen=True)
class EksCluster:
    """What ``eks:DescribeCluster`` reports for a cluster (endpoint and CA are absent until it is ACTIVE)."""

    name: str
    status: str
    endpoint: str | None
    certificate_authority_data: str | None


def aws_client(service: str, *, region: str | None, endpoint_url: str | None, timeout: float | None) -> Any:
    """The process's client for ``service`` with ``timeout``, made on first use. ``timeout=None``: any client
    of that service will do (for local work such as presigning), else one is made with :data:`LOCAL_TIMEOUT`.
    :class:`RegionError` when no credentials are found (nothing is kept then: credentials that appear later
    are used)."""
    credentials = tuple(os.environ.get(name) for name in _CREDENTIAL_SETTINGS)
    place = (service, region, endpoint_url, credentials)
    with _lock:
        if timeout is None:
            client = next((c for (*other, _), c in _clients.items() if tuple(other) == place), None)
            timeout = LOCAL_TIMEOUT
        else:
            client = _clients.get((*place, timeout))
        if client is not None:
            return client
        import botocore.config

        session = _sessions.get(credentials)
        if session is None:
            session = _sessions[credentials] = new_session()
        if session.get_credentials() is None:
            raise RegionError("no AWS credentials found (environment, shared files, instance or task role)")
        config = botocore.config.Config(connect_timeout=timeout, read_timeout=timeout,
                                        retries={"max_attempts": 1, "mode": "standard"})  # fmt: skip
        client = _clients[(*place, timeout)] = session.create_client(service, region_name=region,
                                                                     endpoint_url=endpoint_url, config=config)
        return client


def _describe(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and "Error" in response:
        return f"{response['Error'].get('Code')}: {response['Error'].get('Message')}"
    return f"{type(exc).__name__}: {exc}"


def fetch_secret(cluster: str, *, region: str | None, endpoint_url: str | None, timeout: float) -> ClusterSecret:
    """Read and validate ``lifeline/<cluster>``; :class:`RegionError` or ``ContractError``."""
    import botocore.exceptions

    client = aws_client("secretsmanager", region=region, endpoint_url=endpoint_url, timeout=timeout)
    try:
        value = client.get_secret_value(SecretId=secret_name(cluster))
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise RegionError(f"reading secret {secret_name(cluster)}: {_describe(exc)}") from None
    secret = ClusterSecret.from_json(value.get("SecretString") or "")
    if secret.cluster_name != cluster:
        raise RegionError(f"secret {secret_name(cluster)} is for cluster {secret.cluster_name!r}")
    return secret


def describe_cluster(cluster: str, *, region: str | None, endpoint_url: str | None, timeout: float) -> EksCluster:
    """``eks:DescribeCluster``: the cluster's endpoint and CA as EKS itself reports them; :class:`RegionError`."""
    import botocore.exceptions

    client = aws_client("eks", region=region, endpoint_url=endpoint_url, timeout=timeout)
    try:
        answer = client.describe_cluster(name=cluster)["cluster"]
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise RegionError(f"eks:DescribeCluster {cluster}: {_describe(exc)}") from None
    authority = answer.get("certificateAuthority") or {}
    return EksCluster(name=str(answer.get("name", cluster)), status=str(answer.get("status", "")),
                      endpoint=answer.get("endpoint") or None,
                      certificate_authority_data=authority.get("data") or None)  # fmt: skip


def eks_token(cluster_id: str, *, region: str | None, endpoint_url: str | None, timeout: float) -> str:
    """An EKS IAM token for ``cluster_id``, presigned locally with this process's STS signer client."""
    import botocore.exceptions

    from lifeline_agent.eks_token import get_token

    # Presigning is local, so the link probe's client serves. get_token registers a signing hook on it for the
    # duration of the call: one call at a time. A probe signed meanwhile carries the cluster header too,
    # which STS accepts (it is how an EKS token is checked).
    del timeout
    client = aws_client("sts", region=region, endpoint_url=endpoint_url, timeout=None)
    try:
        with _token_lock:
            return get_token(cluster_id, client=client).token
    except botocore.exceptions.BotoCoreError as exc:
        raise RegionError(f"cannot make an EKS IAM token: {exc}") from None


def list_cluster_names(*, region: str | None, endpoint_url: str | None, timeout: float) -> list[str]:
    """Every cluster with a secret named ``lifeline/<cluster>``."""
    import botocore.exceptions

    client = aws_client("secretsmanager", region=region, endpoint_url=endpoint_url, timeout=timeout)
    names: list[str] = []
    try:
        pages = client.get_paginator("list_secrets").paginate(Filters=[{"Key": "name", "Values": [SECRET_PREFIX]}])
        for page in pages:
            names += [s["Name"][len(SECRET_PREFIX) :] for s in page.get("SecretList", [])
                      if s.get("Name", "").startswith(SECRET_PREFIX)]  # fmt: skip
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise RegionError(f"listing secrets {SECRET_PREFIX}*: {_describe(exc)}") from None
    return sorted(set(names))


def put_metric_data(namespace: str, metric_data: list[dict[str, Any]], *, region: str | None,
                    endpoint_url: str | None, timeout: float) -> None:  # fmt: skip
    """``cloudwatch:PutMetricData`` of ``metric_data`` (at most 1000 entries); :class:`RegionError`."""
    import botocore.exceptions

    client = aws_client("cloudwatch", region=region, endpoint_url=endpoint_url, timeout=timeout)
    try:
        client.put_metric_data(Namespace=namespace, MetricData=metric_data)
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise RegionError(f"cloudwatch:PutMetricData {namespace}: {_describe(exc)}") from None
