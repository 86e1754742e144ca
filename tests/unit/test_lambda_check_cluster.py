"""CheckCluster's decision on a DescribeCluster result (pure logic; EKS is exercised by the lab tests)."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

import pytest

from lambdas.check_cluster.logic import assess
from lambdas.errors import (
    ClusterDeleting,
    ClusterFailed,
    ClusterUnhealthy,
    ClusterWaitTimeout,
    InvalidClusterData,
    OutpostNotAllowed,
)

NOW = dt.datetime(2026, 11, 27, 9, 0, tzinfo=dt.UTC)
BEFORE_DEADLINE = NOW + dt.timedelta(minutes=10)
PAST_DEADLINE = NOW - dt.timedelta(seconds=1)
OUTPOST = "arn:aws:outposts:us-west-2:123456789012:outpost/op-0abcdef1234567890"
ALLOWED = (OUTPOST,)
ISSUE = {"code": "ClusterUnreachable", "message": "cannot reach the Region", "resourceIds": ["i-0abc"]}


def cluster(status: str = "ACTIVE", **changes: Any) -> dict[str, Any]:
    description: dict[str, Any] = {
        "name": "edge-1",
        "arn": "arn:aws:eks:us-west-2:123456789012:cluster/edge-1",
        "id": "3f2a9c1e-1111-2222-3333-444455556666",
        "status": status,
        "version": "1.31",
        "platformVersion": "eks-local-outposts.1",
        "outpostConfig": {"outpostArns": [OUTPOST], "controlPlaneInstanceType": "m5d.large"},
        "health": {"issues": []},
    }
    if status == "ACTIVE":
        description["endpoint"] = "https://10.0.0.10"
        description["certificateAuthority"] = {"data": base64.b64encode(b"-----BEGIN CERTIFICATE-----").decode()}
    description.update(changes)
    return description


def check(description: dict[str, Any], deadline: dt.datetime = BEFORE_DEADLINE) -> Any:
    return assess(description, deadline=deadline, now=NOW, allowed_outpost_arns=ALLOWED)


def test_active_local_cluster_is_ready_with_the_fields_later_steps_need() -> None:
    result = check(cluster())
    assert result.verdict == "READY"
    view = result.cluster
    assert view is not None
    assert (view.name, view.id, view.endpoint, view.outpostArns) == (
        "edge-1", "3f2a9c1e-1111-2222-3333-444455556666", "https://10.0.0.10", [OUTPOST])
    assert view.authenticationMode == "CONFIG_MAP"


def test_access_config_mode_is_carried() -> None:
    view = check(cluster(accessConfig={"authenticationMode": "API_AND_CONFIG_MAP"})).cluster
    assert view is not None and view.authenticationMode == "API_AND_CONFIG_MAP"


def test_creating_before_the_deadline_waits_even_with_health_issues() -> None:
    assert check(cluster("CREATING")).verdict == "WAIT"
    assert check(cluster("CREATING", health={"issues": [ISSUE]})).verdict == "WAIT"


def test_creating_past_the_deadline_with_health_issues_fails_with_them_as_the_cause() -> None:
    with pytest.raises(ClusterUnhealthy, match=r"ClusterUnreachable: cannot reach the Region \[i-0abc\]"):
        check(cluster("CREATING", health={"issues": [ISSUE]}), deadline=PAST_DEADLINE)


def test_creating_past_the_deadline_without_issues_times_out() -> None:
    with pytest.raises(ClusterWaitTimeout, match="still CREATING"):
        check(cluster("CREATING"), deadline=PAST_DEADLINE)


def test_deleting_and_failed_fail_at_once() -> None:
    with pytest.raises(ClusterDeleting):
        check(cluster("DELETING"))
    with pytest.raises(ClusterFailed, match="ClusterUnreachable"):
        check(cluster("FAILED", health={"issues": [ISSUE]}))


def test_cluster_without_outpost_config_is_skipped_with_a_reason() -> None:
    result = check(cluster("CREATING", outpostConfig=None))
    assert result.verdict == "SKIP" and "no outpostConfig" in result.reason


def test_cluster_on_a_foreign_outpost_is_refused() -> None:
    foreign = {"outpostArns": ["arn:aws:outposts:us-west-2:123456789012:outpost/op-0123456789abcdef0"]}
    with pytest.raises(OutpostNotAllowed):
        check(cluster(outpostConfig=foreign))


@pytest.mark.parametrize("missing", ["endpoint", "certificateAuthority", "arn"])
def test_active_cluster_without_endpoint_or_ca_is_invalid_data(missing: str) -> None:
    description = cluster()
    del description[missing]
    with pytest.raises(InvalidClusterData):
        check(description)
