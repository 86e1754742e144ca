"""The synthesized CloudTrail rule pattern, evaluated with moto's EventBridge pattern matcher."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from moto.events.models import EventPattern

from tests.infrastructure.conftest import OUTPOST_A, Synthesized

OTHER_OUTPOST = "arn:aws:outposts:us-west-2:123456789012:outpost/op-0123456789abcdef0"


def cloudtrail_event(request_parameters: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "version": "0",
        "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
        "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.eks",
        "account": "123456789012",
        "time": "2026-11-27T09:00:00Z",
        "region": "us-west-2",
        "resources": [],
        "detail": {
            "eventVersion": "1.08",
            "eventSource": "eks.amazonaws.com",
            "eventName": "CreateCluster",
            "awsRegion": "us-west-2",
            "requestParameters": request_parameters,
            "responseElements": {"cluster": {"status": "CREATING"}},
        },
    }
    for key, value in overrides.items():
        event[key] = value
    return event


def local_request(name_field: str = "name", outpost: str = OUTPOST_A) -> dict[str, Any]:
    return {
        name_field: "edge-1",
        "roleArn": "arn:aws:iam::123456789012:role/eks",
        "resourcesVpcConfig": {"subnetIds": ["subnet-0123456789abcdef0"]},
        "outpostConfig": {"outpostArns": [outpost], "controlPlaneInstanceType": "m5d.large"},
    }


def _rule_pattern(synth: Synthesized, source: str) -> EventPattern:
    for rule in synth.resources("AWS::Events::Rule").values():
        pattern = rule["Properties"]["EventPattern"]
        if pattern["source"] == [source]:
            return EventPattern.load(json.dumps(pattern))
    raise AssertionError(f"no rule for {source}")


@pytest.fixture(scope="module")
def cloudtrail_pattern(synthesized: Synthesized) -> EventPattern:
    return _rule_pattern(synthesized, "aws.eks")


@pytest.mark.parametrize("name_field", ["name", "clusterName"])
def test_matches_create_cluster_with_outpost_config(cloudtrail_pattern: EventPattern, name_field: str) -> None:
    assert cloudtrail_pattern.matches_event(cloudtrail_event(local_request(name_field)))


def test_does_not_match_a_cluster_without_outpost_config(cloudtrail_pattern: EventPattern) -> None:
    request = local_request()
    del request["outpostConfig"]
    assert not cloudtrail_pattern.matches_event(cloudtrail_event(request))


def test_does_not_match_an_empty_outpost_config_object(cloudtrail_pattern: EventPattern) -> None:
    request = local_request()
    request["outpostConfig"] = {}
    assert not cloudtrail_pattern.matches_event(cloudtrail_event(request))


def test_does_not_match_an_outpost_that_is_not_allowed(cloudtrail_pattern: EventPattern) -> None:
    assert not cloudtrail_pattern.matches_event(cloudtrail_event(local_request(outpost=OTHER_OUTPOST)))


@pytest.mark.parametrize("event_name", ["DeleteCluster", "UpdateClusterConfig", "CreateNodegroup"])
def test_does_not_match_other_event_names(cloudtrail_pattern: EventPattern, event_name: str) -> None:
    event = cloudtrail_event(local_request())
    event["detail"]["eventName"] = event_name
    assert not cloudtrail_pattern.matches_event(event)


@pytest.mark.parametrize(
    ("field", "value"),
    [("source", "aws.ecs"), ("source", "lifeline"), ("detail-type", "EKS Cluster State Change")],
)
def test_does_not_match_other_sources_or_detail_types(cloudtrail_pattern: EventPattern, field: str, value: str) -> None:
    assert not cloudtrail_pattern.matches_event(cloudtrail_event(local_request(), **{field: value}))


def test_does_not_match_a_failed_create_cluster_call(cloudtrail_pattern: EventPattern) -> None:
    event = cloudtrail_event(local_request())
    event["detail"]["errorCode"] = "InvalidParameterException"
    assert not cloudtrail_pattern.matches_event(event)


def test_without_allowed_outposts_any_outpost_matches() -> None:
    from tests.infrastructure.conftest import _synthesize

    open_synth = _synthesize({"lifeline:stackName": "LifelineOpen"})
    pattern = _rule_pattern(open_synth, "aws.eks")
    assert pattern.matches_event(cloudtrail_event(local_request(outpost=OTHER_OUTPOST)))
    request = copy.deepcopy(local_request())
    del request["outpostConfig"]
    assert not pattern.matches_event(cloudtrail_event(request))


def test_provision_rule_matches_only_the_provision_request(synthesized: Synthesized) -> None:
    pattern = _rule_pattern(synthesized, "lifeline")
    request = {"version": "0", "source": "lifeline", "detail-type": "Lifeline Provision Request",
               "detail": {"name": "edge-1"}}
    assert pattern.matches_event(request)
    assert not pattern.matches_event({**request, "detail-type": "Lifeline Offline Access Ready"})
    assert not pattern.matches_event({**request, "source": "aws.eks"})
