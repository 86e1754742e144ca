"""NormaliseRequest's pure logic: the three ways in, the poll plan, the CreateCluster parameters, refusals."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from lambdas import constants
from lambdas.config import WorkflowConfig
from lambdas.errors import EventOriginMismatch, InvalidRequest, OutpostNotAllowed, WorkflowMisconfigured
from lambdas.normalise_request.logic import MAX_INPUT_BYTES, normalise

NOW = dt.datetime(2026, 11, 27, 9, 0, tzinfo=dt.UTC)
OUTPOST = "arn:aws:outposts:us-west-2:123456789012:outpost/op-0abcdef1234567890"
FOREIGN_OUTPOST = "arn:aws:outposts:us-west-2:123456789012:outpost/op-0123456789abcdef0"
ROLE = "arn:aws:iam::123456789012:role/eks-local"
ACCOUNT = "123456789012"
REGION = "us-west-2"
ORIGIN = {"stack_account": ACCOUNT, "stack_region": REGION}
CONFIG = WorkflowConfig(allowed_outpost_arns=(OUTPOST,), poll_interval_seconds=30, max_wait_seconds=600,
                        max_wait_limit_seconds=3600, **ORIGIN)


def cloudtrail(parameters: dict[str, Any], **detail: Any) -> dict[str, Any]:
    return {
        "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.eks",
        "account": ACCOUNT,
        "region": REGION,
        "detail": {"eventSource": "eks.amazonaws.com", "eventName": "CreateCluster", "requestParameters": parameters,
                   "userIdentity": {"arn": ROLE}, "recipientAccountId": ACCOUNT, "awsRegion": REGION, **detail},
    }


def provision(**changes: Any) -> dict[str, Any]:
    request: dict[str, Any] = {
        "name": "edge-1",
        "roleArn": ROLE,
        "resourcesVpcConfig": {"subnetIds": ["subnet-0123456789abcdef0"]},
        "outpostConfig": {"outpostArns": [OUTPOST], "controlPlaneInstanceType": "m5d.large"},
    }
    request.update(changes)
    return request


@pytest.mark.parametrize("name_field", ["name", "clusterName"])
def test_cloudtrail_event_in_both_shapes(name_field: str) -> None:
    request = normalise(cloudtrail({name_field: "edge-1", "outpostConfig": {"outpostArns": [OUTPOST]}}),
                        config=CONFIG, now=NOW)
    assert (request.clusterName, request.trigger, request.create) == ("edge-1", "cloudtrail", False)
    assert request.createRequest is None
    assert request.requestedOutpostArns == [OUTPOST]
    assert request.poll.intervalSeconds == 30 and request.poll.deadline == "2026-11-27T09:10:00Z"


def test_cloudtrail_event_without_outpost_config_is_accepted_for_check_cluster_to_skip() -> None:
    request = normalise(cloudtrail({"name": "regional"}), config=CONFIG, now=NOW)
    assert request.requestedOutpostArns == []


def test_provision_request_event_makes_idempotent_create_cluster_parameters() -> None:
    event = {"detail-type": constants.PROVISION_REQUEST_DETAIL_TYPE, "source": "lifeline", "account": ACCOUNT,
             "region": REGION, "detail": provision(version="1.31", tags={"team": "edge"})}
    first = normalise(event, config=CONFIG, now=NOW)
    again = normalise(event, config=CONFIG, now=NOW + dt.timedelta(hours=1))
    assert first.trigger == "provision-event" and first.create
    parameters = first.createRequest
    assert parameters is not None
    assert parameters["name"] == "edge-1" and parameters["version"] == "1.31"
    assert parameters["outpostConfig"] == {"outpostArns": [OUTPOST], "controlPlaneInstanceType": "m5d.large"}
    assert parameters["tags"] == {"team": "edge", constants.TAG_MANAGED_BY: constants.MANAGED_BY_VALUE}
    assert parameters["clientRequestToken"] == (again.createRequest or {})["clientRequestToken"]


def test_direct_request_with_wait_overrides_and_explicit_token() -> None:
    request = normalise(provision(clientRequestToken="abc-123", pollIntervalSeconds=1, maxWaitSeconds=5),
                        config=CONFIG, now=NOW)
    assert request.trigger == "direct"
    assert (request.createRequest or {})["clientRequestToken"] == "abc-123"
    assert request.poll.intervalSeconds == 1 and request.poll.deadline == "2026-11-27T09:00:05Z"


def test_register_existing_cluster_without_create() -> None:
    request = normalise({"clusterName": "edge-1", "create": False}, config=CONFIG, now=NOW)
    assert not request.create and request.createRequest is None


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"name": "a/b", "create": False}, "name"),
        ({"name": "x", "create": False, "maxWaitSeconds": 3601}, "maxWaitSeconds"),
        ({"name": "x", "create": False, "pollIntervalSeconds": 0}, "pollIntervalSeconds"),
        ({"name": "x", "create": False, "maxWaitSeconds": "60"}, "maxWaitSeconds"),
        (provision(resourcesVpcConfig={"subnetIds": []}), "subnetIds"),
        (provision(resourcesVpcConfig={"subnetIds": ["subnet-0123456789abcdef0"], "publicAccessCidrs": []}),
         "publicAccessCidrs"),
        (provision(version="latest"), "version"),
        (provision(accessConfig={"authenticationMode": "ANYTHING"}), "authenticationMode"),
        (provision(clientRequestToken="x" * 65), "clientRequestToken"),
        (provision(outpostConfig={"outpostArns": []}), "outpostArns"),
        (provision(outpostConfig={"outpostArns": ["arn:aws:outposts:us-west-2:1:outpost/op-1"]}), "outpostArns"),
        ({k: v for k, v in provision().items() if k != "roleArn"}, "roleArn"),
        (cloudtrail({"outpostConfig": {"outpostArns": [OUTPOST]}}), "cluster name is missing"),
        ({"detail-type": "Lifeline Provision Request", "source": "aws.eks", "account": ACCOUNT, "region": REGION,
          "detail": provision()}, "source"),
        ({k: v for k, v in cloudtrail({"name": "edge-1"}).items() if k != "account"}, "account"),
        ({**cloudtrail({"name": "edge-1"}), "region": "nowhere"}, "region"),
        ({"padding": "x" * MAX_INPUT_BYTES}, "bytes"),
        ("edge-1", "JSON object"),
    ],
)
def test_bad_requests_are_refused_with_the_field_named(event: Any, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        normalise(event, config=CONFIG, now=NOW)


def test_refusal_messages_do_not_echo_hostile_values() -> None:
    hostile = "<script>" + "A" * 500
    with pytest.raises(InvalidRequest) as raised:
        normalise({"name": hostile, "create": False}, config=CONFIG, now=NOW)
    assert "<script>" not in str(raised.value) and len(str(raised.value)) < 300


@pytest.mark.parametrize(
    "event",
    [
        cloudtrail({"name": "edge-1", "outpostConfig": {"outpostArns": [FOREIGN_OUTPOST]}}),
        provision(outpostConfig={"outpostArns": [FOREIGN_OUTPOST], "controlPlaneInstanceType": "m5d.large"}),
    ],
)
def test_outposts_outside_the_allowed_list_are_refused(event: dict[str, Any]) -> None:
    with pytest.raises(OutpostNotAllowed, match="op-0123456789abcdef0"):
        normalise(event, config=CONFIG, now=NOW)


def test_every_outpost_is_allowed_when_no_list_is_configured() -> None:
    event = cloudtrail({"name": "edge-1", "outpostConfig": {"outpostArns": [FOREIGN_OUTPOST]}})
    assert normalise(event, config=WorkflowConfig(**ORIGIN), now=NOW).requestedOutpostArns == [FOREIGN_OUTPOST]


def _provision_event(**envelope: Any) -> dict[str, Any]:
    return {"detail-type": constants.PROVISION_REQUEST_DETAIL_TYPE, "source": "lifeline", "account": ACCOUNT,
            "region": REGION, "detail": provision(), **envelope}


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({**cloudtrail({"name": "edge-1"}), "account": "210987654321"}, "^account: .*210987654321"),
        ({**cloudtrail({"name": "edge-1"}), "region": "eu-west-1"}, "^region: .*eu-west-1"),
        (cloudtrail({"name": "edge-1"}, recipientAccountId="210987654321"), "^detail.account: .*210987654321"),
        (cloudtrail({"name": "edge-1"}, awsRegion="eu-west-1"), "^detail.region: .*eu-west-1"),
        (_provision_event(account="210987654321"), "^account: "),
        (_provision_event(region="eu-west-1"), "^region: "),
    ],
)
def test_events_from_another_account_or_region_are_refused_by_name(event: dict[str, Any], message: str) -> None:
    with pytest.raises(EventOriginMismatch, match=message):
        normalise(event, config=CONFIG, now=NOW)


def test_the_same_event_from_this_account_and_region_is_accepted() -> None:
    assert normalise(cloudtrail({"name": "edge-1"}), config=CONFIG, now=NOW).clusterName == "edge-1"
    assert normalise(_provision_event(), config=CONFIG, now=NOW).clusterName == "edge-1"


def test_events_are_refused_when_the_stack_did_not_say_its_account_and_region() -> None:
    with pytest.raises(WorkflowMisconfigured, match="LIFELINE_STACK_ACCOUNT"):
        normalise(cloudtrail({"name": "edge-1"}), config=WorkflowConfig(), now=NOW)


def test_direct_requests_carry_no_origin_and_need_none() -> None:
    assert normalise({"name": "edge-1", "create": False}, config=WorkflowConfig(), now=NOW).trigger == "direct"
