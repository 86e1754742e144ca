"""EKS local-cluster behaviour added to moto, through boto3 against the lab's Region server.

The provisioner (the lab's control-plane factory) is replaced by a recorder: these tests are about the
Region's EKS API, not the control plane.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from lab.region import ProvisionRequest

OUTPOST = "arn:aws:outposts:us-west-2:123456789012:outpost/op-0123456789abcdef0"
CA_PEM = b"-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"


class Recorder:
    def __init__(self) -> None:
        self.requests: list[ProvisionRequest] = []
        self.fail = False

    def __call__(self, name: str, request: ProvisionRequest) -> tuple[str, bytes]:
        if self.fail:
            raise OSError("no free port")
        self.requests.append(request)
        return f"https://localhost:{40000 + len(self.requests)}", CA_PEM


@pytest.fixture
def provisioner(lab: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Recorder]:
    recorder = Recorder()
    monkeypatch.setattr(lab.region.hooks, "provisioner", recorder)
    yield recorder


def _create(lab: Any, name: str, **extra: Any) -> dict[str, Any]:
    return lab.client("eks").create_cluster(  # type: ignore[no-any-return]
        name=name,
        roleArn="arn:aws:iam::123456789012:role/eks",
        resourcesVpcConfig={"subnetIds": ["subnet-1"]},
        **extra,
    )["cluster"]


def _local(instance_type: str = "m5d.large", arns: list[str] | None = None) -> dict[str, Any]:
    return {"outpostArns": [OUTPOST] if arns is None else arns, "controlPlaneInstanceType": instance_type}


def test_local_cluster_is_creating_then_active_with_ca_and_endpoint(
    lab: Any, provisioner: Recorder, unique_name: str
) -> None:
    created = _create(lab, unique_name, outpostConfig=_local(), tags={"lab:activation-delay": "1"})
    assert created["status"] == "CREATING"
    assert created["outpostConfig"] == _local()
    assert len(created["id"]) == 36
    assert "endpoint" not in created  # EKS publishes neither endpoint nor CA while CREATING
    assert created["platformVersion"].startswith("eks-local-outposts.")
    eks = lab.client("eks")
    assert eks.describe_cluster(name=unique_name)["cluster"]["status"] == "CREATING"
    time.sleep(1.1)
    described = eks.describe_cluster(name=unique_name)["cluster"]
    assert described["status"] == "ACTIVE"
    assert described["id"] == created["id"]
    assert described["outpostConfig"]["outpostArns"] == [OUTPOST]
    assert base64.b64decode(described["certificateAuthority"]["data"]) == CA_PEM
    assert described["endpoint"] == "https://localhost:40001"
    assert described["accessConfig"]["authenticationMode"] == "CONFIG_MAP"
    (request,) = provisioner.requests
    assert request.is_local and request.cluster_id == created["id"]
    assert request.creator_arn == lab.creator.arn  # the caller of CreateCluster: permanent admin


def test_health_issues_keep_a_cluster_creating(lab: Any, provisioner: Recorder, unique_name: str) -> None:
    _create(lab, unique_name, outpostConfig=_local(), tags={"lab:activation-delay": "0.2"})
    issue = {"code": "ClusterUnreachable", "message": "control plane instances unreachable", "resourceIds": ["i-1"]}
    lab.region.set_health_issues(unique_name, [issue])
    time.sleep(0.3)
    described = lab.client("eks").describe_cluster(name=unique_name)["cluster"]
    assert described["status"] == "CREATING"
    assert described["health"]["issues"] == [issue]
    lab.region.set_health_issues(unique_name, [])
    assert lab.client("eks").describe_cluster(name=unique_name)["cluster"]["status"] == "ACTIVE"


def test_cluster_without_outpost_config_is_extended(lab: Any, provisioner: Recorder, unique_name: str) -> None:
    created = _create(lab, unique_name)
    assert "outpostConfig" not in created
    assert provisioner.requests[0].outpost_config is None


@pytest.mark.parametrize(
    ("outpost_config", "message"),
    [
        (_local(arns=[]), "outpostArns is required"),
        (_local(arns=[OUTPOST, OUTPOST.replace("0123", "9999")]), "Only a single Outpost ARN"),
        (_local(arns=["arn:aws:ec2:us-west-2:123456789012:instance/i-1"]), "Invalid Outpost ARN"),
        (_local(instance_type=""), "controlPlaneInstanceType is required"),
    ],
)
def test_invalid_outpost_config_is_rejected_like_eks(
    lab: Any, provisioner: Recorder, unique_name: str, outpost_config: dict[str, Any], message: str
) -> None:
    with pytest.raises(ClientError) as caught:
        _create(lab, unique_name, outpostConfig=outpost_config)
    assert caught.value.response["Error"]["Code"] == "InvalidParameterException"
    assert message in caught.value.response["Error"]["Message"]
    assert unique_name not in lab.client("eks").list_clusters()["clusters"]
    assert provisioner.requests == []


def test_local_cluster_version_must_be_one_eks_supports_on_outposts(
    lab: Any, provisioner: Recorder, unique_name: str
) -> None:
    with pytest.raises(ClientError) as caught:
        _create(lab, unique_name, outpostConfig=_local(), version="1.27")
    assert caught.value.response["Error"]["Code"] == "InvalidParameterException"
    assert "1.29, 1.30, 1.31, 1.32" in caught.value.response["Error"]["Message"]
    assert _create(lab, unique_name, outpostConfig=_local(), version="1.29")["version"] == "1.29"


def test_provisioning_failure_leaves_no_cluster(lab: Any, provisioner: Recorder, unique_name: str) -> None:
    provisioner.fail = True
    with pytest.raises(ClientError) as caught:
        _create(lab, unique_name, outpostConfig=_local())
    assert caught.value.response["Error"]["Code"] == "ServerException"
    assert unique_name not in lab.client("eks").list_clusters()["clusters"]


def test_create_cluster_reaches_eventbridge_as_cloudtrail_event_while_a_trail_logs(
    lab: Any, provisioner: Recorder, unique_name: str
) -> None:
    cloudtrail = lab.client("cloudtrail")
    trail_arn = lab.enable_cloudtrail()
    cloudtrail.stop_logging(Name=trail_arn)
    _create(lab, f"{unique_name}-quiet", outpostConfig=_local())
    lab.enable_cloudtrail()
    try:
        _create(lab, unique_name, outpostConfig=_local())
    finally:
        cloudtrail.stop_logging(Name=trail_arn)  # the session lab is shared: leave CloudTrail as found
    calls = [e["detail"] for e in lab.region.events(detail_type="AWS API Call via CloudTrail", source="aws.eks")]
    names = [c["requestParameters"]["name"] for c in calls]
    assert unique_name in names and f"{unique_name}-quiet" not in names
    (call,) = [c for c in calls if c["requestParameters"]["name"] == unique_name]
    assert call["eventName"] == "CreateCluster"
    assert call["eventSource"] == "eks.amazonaws.com"
    assert call["requestParameters"]["outpostConfig"] == _local()
    assert call["userIdentity"]["arn"] == lab.creator.arn


def test_apply_all_is_idempotent(lab: Any) -> None:
    from moto.eks.models import EKSBackend
    from moto.events.models import Rule

    from lab.region import moto_patches

    before = (EKSBackend.describe_cluster, Rule.send_to_targets)
    moto_patches.apply_all(lab.region.hooks)
    assert (EKSBackend.describe_cluster, Rule.send_to_targets) == before
    assert moto_patches.current_hooks() is lab.region.hooks
