"""CheckCluster: one DescribeCluster and the decision the state machine branches on.

READY (ACTIVE local cluster), WAIT (still coming up, deadline not reached), SKIP (no ``outpostConfig``:
not a local cluster). Named failures: DELETING/FAILED at once; past the deadline, ClusterUnhealthy with
the health issues as the cause when there are any (local clusters never go FAILED), else
ClusterWaitTimeout.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import botocore.exceptions
from pydantic import ValidationError

from lambdas.aws import error_code, raise_transient
from lambdas.errors import (
    ClusterDeleting,
    ClusterFailed,
    ClusterNotFound,
    ClusterUnhealthy,
    ClusterWaitTimeout,
    InvalidClusterData,
    OutpostNotAllowed,
)
from lambdas.models import CheckResult, ClusterView
from lambdas.validation import describe_validation_error

MAX_ISSUES_REPORTED = 10


def describe_cluster(eks: Any, name: str) -> dict[str, Any]:
    try:
        return dict(eks.describe_cluster(name=name)["cluster"])
    except botocore.exceptions.ClientError as exc:
        if error_code(exc) == "ResourceNotFoundException":
            raise ClusterNotFound(f"no EKS cluster named {name}") from None
        raise_transient(exc, "DescribeCluster")
        raise
    except botocore.exceptions.BotoCoreError as exc:
        raise_transient(exc, "DescribeCluster")
        raise


def format_health_issues(cluster: dict[str, Any]) -> str:
    issues = (cluster.get("health") or {}).get("issues") or []
    rendered = []
    for issue in issues[:MAX_ISSUES_REPORTED]:
        resources = ", ".join(str(r) for r in issue.get("resourceIds") or [])
        text = f"{issue.get('code', 'Unknown')}: {issue.get('message', '')}".strip()
        rendered.append(f"{text} [{resources}]" if resources else text)
    return "; ".join(rendered)


def assess(
    cluster: dict[str, Any], *, deadline: dt.datetime, now: dt.datetime, allowed_outpost_arns: tuple[str, ...]
) -> CheckResult:
    name = str(cluster.get("name", ""))
    status = str(cluster.get("status", "UNKNOWN"))
    issues = format_health_issues(cluster)
    if status == "DELETING":
        raise ClusterDeleting(f"cluster {name} is being deleted")
    if status == "FAILED":
        raise ClusterFailed(f"cluster {name} is FAILED" + (f": {issues}" if issues else ""))
    outpost_arns = list((cluster.get("outpostConfig") or {}).get("outpostArns") or [])
    if not outpost_arns:
        return CheckResult(
            verdict="SKIP",
            status=status,
            reason=f"cluster {name} has no outpostConfig: not an EKS local cluster on AWS Outposts",
        )
    refused = [arn for arn in outpost_arns if allowed_outpost_arns and arn not in allowed_outpost_arns]
    if refused:
        raise OutpostNotAllowed(f"cluster {name} runs on {refused[0]}, which is not an allowed Outpost")
    if status == "ACTIVE":
        return CheckResult(verdict="READY", status=status, reason="cluster is ACTIVE", cluster=cluster_view(cluster))
    if now >= deadline:
        if issues:
            raise ClusterUnhealthy(f"cluster {name} is still {status} with health issues: {issues}")
        raise ClusterWaitTimeout(f"cluster {name} is still {status} at the wait deadline {deadline.isoformat()}")
    return CheckResult(verdict="WAIT", status=status, reason=f"cluster is {status}")


def cluster_view(cluster: dict[str, Any]) -> ClusterView:
    """The fields later steps use; an ACTIVE cluster without endpoint or CA is invalid data."""
    fields = {
        "name": cluster.get("name"),
        "arn": cluster.get("arn"),
        "id": cluster.get("id"),
        "status": cluster.get("status"),
        "endpoint": cluster.get("endpoint"),
        "certificateAuthorityData": (cluster.get("certificateAuthority") or {}).get("data"),
        "version": cluster.get("version"),
        "platformVersion": cluster.get("platformVersion"),
        "outpostArns": list((cluster.get("outpostConfig") or {}).get("outpostArns") or []),
        "authenticationMode": (cluster.get("accessConfig") or {}).get("authenticationMode") or "CONFIG_MAP",
    }
    try:
        return ClusterView.model_validate(fields)
    except ValidationError as exc:
        raise InvalidClusterData(f"DescribeCluster: {describe_validation_error(exc)}") from None
