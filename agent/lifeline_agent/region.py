"""The Region side the agent uses while the link is up: Secrets Manager (``lifeline/<cluster>``) and STS.

Clients use the standard boto3 credential chain, ``aws_endpoint_url`` when configured (VPC endpoints,
the lab) and short timeouts without retries: the caller decides when to try again.
"""

from __future__ import annotations

from typing import Any

from lifeline_agent.contract import SECRET_PREFIX, ClusterSecret, secret_name


class RegionError(Exception):
    """A call to the Region failed (unreachable, denied, or the secret is missing)."""


def aws_client(service: str, *, region: str | None, endpoint_url: str | None, timeout: float) -> Any:
    import boto3
    import botocore.config

    config = botocore.config.Config(connect_timeout=timeout, read_timeout=timeout,
                                    retries={"max_attempts": 1, "mode": "standard"})  # fmt: skip
    return boto3.session.Session().client(service, region_name=region, endpoint_url=endpoint_url, config=config)


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
