"""One synthesized app per test process, shared by the infrastructure tests (first synth takes seconds)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

AGENT_ROLE = "arn:aws:iam::123456789012:role/lifeline-agent"
AGENT_USER = "arn:aws:iam::123456789012:user/lifeline-agent"
CLUSTER_ROLE = "arn:aws:iam::123456789012:role/eks-local-cluster"
OUTPOST_A = "arn:aws:outposts:us-west-2:123456789012:outpost/op-0abcdef1234567890"
OUTPOST_B = "arn:aws:outposts:us-west-2:123456789012:outpost/op-0fedcba9876543210"

BASE_CONTEXT: dict[str, Any] = {
    "lifeline:agentPrincipalArns": [AGENT_ROLE, AGENT_USER],
    "lifeline:allowedOutpostArns": [OUTPOST_A, OUTPOST_B],
    "lifeline:clusterRoleArns": [CLUSTER_ROLE],
    "lifeline:pollIntervalSeconds": 30,
    "lifeline:maxWaitSeconds": 1800,
}
FULL_CONTEXT: dict[str, Any] = {
    **BASE_CONTEXT,
    "lifeline:stackName": "LifelineFull",
    "lifeline:vpcId": "vpc-0123456789abcdef0",
    "lifeline:subnetIds": ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"],
    "lifeline:availabilityZones": ["us-west-2a", "us-west-2b"],
    "lifeline:securityGroupIds": ["sg-0123456789abcdef0"],
    "lifeline:createTrail": True,
    "lifeline:alarmTopicArn": "arn:aws:sns:us-west-2:123456789012:ops-alarms",
    "lifeline:clusterNamePattern": "prod-*",
    "lifeline:operatorsGroup": "ops:on-call",
    "lifeline:operatorsClusterRole": "edit",
}


@dataclass(frozen=True)
class Synthesized:
    stack: Any
    template: Any  # aws_cdk.assertions.Template
    json: dict[str, Any]

    def resources(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.json["Resources"].items() if v["Type"] == resource_type}


def _synthesize(context: dict[str, Any]) -> Synthesized:
    from aws_cdk.assertions import Template

    from cdk.application import build_app

    _, stack = build_app(context)
    template = Template.from_stack(stack)
    return Synthesized(stack=stack, template=template, json=template.to_json())


@pytest.fixture(scope="session")
def synthesized() -> Synthesized:
    return _synthesize(BASE_CONTEXT)


@pytest.fixture(scope="session")
def synthesized_full() -> Synthesized:
    """VPC placement for the RBAC Lambda, a CloudTrail trail, an alarm topic, a narrow cluster pattern."""
    return _synthesize(FULL_CONTEXT)
