"""Deploy the synthesized Lifeline stack's runtime resources into the lab Region (moto).

CloudFormation is not run: the resources the workflow needs at run time are created from the synthesized
template itself (never a hand-written copy): the KMS key, the IAM roles, the log groups, the dead-letter
queue, the Lambda functions (a placeholder zip with the template's real Handler and Environment: the lab
runs the handlers in-process), the state machine (its DefinitionString with ``Ref``/``Fn::GetAtt``/
``Fn::Join`` resolved to the lab's ARNs) and the EventBridge rules with their targets.
"""

from __future__ import annotations

import io
import json
import re
import weakref
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

ACCOUNT_ID = "123456789012"
PSEUDO_PARAMETERS = {"AWS::Partition": "aws", "AWS::AccountId": ACCOUNT_ID, "AWS::URLSuffix": "amazonaws.com"}
DEPLOY_ORDER = (
    "AWS::KMS::Key",
    "AWS::IAM::Role",
    "AWS::Logs::LogGroup",
    "AWS::SQS::Queue",
    "AWS::Lambda::Function",
    "AWS::StepFunctions::StateMachine",
    "AWS::Events::Rule",
)


class DeployError(RuntimeError):
    """The template has something this lab deployer cannot resolve or create."""


@dataclass
class DeployedStack:
    """What was created, by the template's logical IDs."""

    state_machine_arn: str
    kms_key_arn: str
    dead_letter_queue_url: str
    functions: dict[str, str] = field(default_factory=dict)  # logical ID -> function name
    rules: dict[str, str] = field(default_factory=dict)  # logical ID -> rule name
    physical: dict[str, dict[str, str]] = field(default_factory=dict)  # logical ID -> {"Ref", attributes}
    allowed_outpost_arns: list[str] = field(default_factory=list)  # set by lab_deployment

    def function_named(self, handler_package: str) -> str:
        """The lab function name whose logical ID contains ``handler_package`` (e.g. ``NormaliseRequest``)."""
        matches = [name for logical, name in self.functions.items() if handler_package in logical]
        if len(matches) != 1:
            raise DeployError(f"no single function matches {handler_package!r}: {matches}")
        return matches[0]


def _placeholder_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("README.txt", "The lab runs the handler from the repository, in-process.\n")
    return buffer.getvalue()


class _Resolver:
    def __init__(self, region: str, physical: dict[str, dict[str, str]]) -> None:
        self.pseudo = {**PSEUDO_PARAMETERS, "AWS::Region": region}
        self.physical = physical

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, argument), = value.items()
            if key == "Ref":
                return self._ref(argument)
            if key == "Fn::GetAtt":
                logical, attribute = argument if isinstance(argument, list) else argument.split(".", 1)
                return self._attribute(logical, attribute)
            if key == "Fn::Join":
                separator, parts = argument
                return separator.join(str(self.resolve(part)) for part in self.resolve(parts))
            if key == "Fn::Select":
                index, items = argument
                return self.resolve(items)[int(self.resolve(index))]
            if key == "Fn::Split":
                separator, text = argument
                return str(self.resolve(text)).split(separator)
            if key == "Fn::Sub":
                return self._sub(argument)
            if key.startswith("Fn::"):
                raise DeployError(f"intrinsic {key} is not supported by the lab deployer")
        return {key: self.resolve(item) for key, item in value.items()}

    def _sub(self, argument: Any) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else argument
        values = {name: str(self.resolve(value)) for name, value in variables.items()}

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in values:
                return values[name]
            if "." in name:
                return self._attribute(*name.split(".", 1))
            return self._ref(name)

        return re.sub(r"\$\{([^}!]+)\}", substitute, text)

    def _ref(self, name: str) -> str:
        if name in self.pseudo:
            return self.pseudo[name]
        if name not in self.physical:
            raise DeployError(f"Ref to {name}, which was not deployed (yet)")
        return self.physical[name]["Ref"]

    def _attribute(self, logical: str, attribute: str) -> str:
        try:
            return self.physical[logical][attribute]
        except KeyError:
            raise DeployError(f"Fn::GetAtt {logical}.{attribute} is not known") from None


def deploy_stack(
    lab: Any,
    template: Mapping[str, Any],
    *,
    overrides: Mapping[str, Any] | None = None,
    name_prefix: str = "lifeline",
) -> DeployedStack:
    """Create the template's runtime resources in ``lab``'s Region.

    ``overrides["function_environment"]``: extra environment for every function (lab-only settings such as
    the STS endpoint the lab's control planes verify tokens with).
    """
    overrides = dict(overrides or {})
    extra_environment: dict[str, str] = dict(overrides.pop("function_environment", {}))
    if overrides:
        raise DeployError(f"unknown overrides: {sorted(overrides)}")
    resources: dict[str, Any] = dict(template["Resources"])
    physical: dict[str, dict[str, str]] = {}
    resolver = _Resolver(lab.region.name, physical)
    clients = {s: lab.client(s) for s in ("kms", "iam", "logs", "sqs", "lambda", "stepfunctions", "events")}
    deployed = DeployedStack(state_machine_arn="", kms_key_arn="", dead_letter_queue_url="", physical=physical)

    def name_for(logical: str, limit: int = 64) -> str:
        return f"{name_prefix}-{logical}"[:limit]

    for resource_type in DEPLOY_ORDER:
        for logical, resource in resources.items():
            if resource["Type"] != resource_type:
                continue
            properties = resolver.resolve(resource.get("Properties", {}))
            if resource_type == "AWS::KMS::Key":
                key = clients["kms"].create_key(Description=properties.get("Description", logical))["KeyMetadata"]
                physical[logical] = {"Ref": key["KeyId"], "Arn": key["Arn"]}
                deployed.kms_key_arn = key["Arn"]
            elif resource_type == "AWS::IAM::Role":
                role = clients["iam"].create_role(
                    RoleName=name_for(logical),
                    AssumeRolePolicyDocument=json.dumps(properties["AssumeRolePolicyDocument"]),
                )["Role"]
                physical[logical] = {"Ref": role["RoleName"], "Arn": role["Arn"]}
            elif resource_type == "AWS::Logs::LogGroup":
                group = name_for(logical, 512)
                clients["logs"].create_log_group(logGroupName=group)
                arn = f"arn:aws:logs:{lab.region.name}:{ACCOUNT_ID}:log-group:{group}:*"
                physical[logical] = {"Ref": group, "Arn": arn}
            elif resource_type == "AWS::SQS::Queue":
                url = clients["sqs"].create_queue(QueueName=name_for(logical, 80))["QueueUrl"]
                arn = clients["sqs"].get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
                physical[logical] = {"Ref": url, "Arn": arn["Attributes"]["QueueArn"]}
                deployed.dead_letter_queue_url = url
            elif resource_type == "AWS::Lambda::Function":
                environment = {**properties.get("Environment", {}).get("Variables", {}), **extra_environment}
                function = clients["lambda"].create_function(
                    FunctionName=name_for(logical),
                    Runtime=properties["Runtime"],
                    Role=properties["Role"],
                    Handler=properties["Handler"],
                    Code={"ZipFile": _placeholder_zip()},
                    Environment={"Variables": environment},
                    Timeout=int(properties.get("Timeout", 3)),
                    MemorySize=int(properties.get("MemorySize", 128)),
                )
                physical[logical] = {"Ref": function["FunctionName"], "Arn": function["FunctionArn"]}
                deployed.functions[logical] = function["FunctionName"]
            elif resource_type == "AWS::StepFunctions::StateMachine":
                machine = clients["stepfunctions"].create_state_machine(
                    name=name_for(logical, 80),
                    definition=properties["DefinitionString"],
                    roleArn=properties["RoleArn"],
                    type=properties.get("StateMachineType", "STANDARD"),
                )
                arn = machine["stateMachineArn"]
                physical[logical] = {"Ref": arn, "Arn": arn, "Name": name_for(logical, 80)}
                deployed.state_machine_arn = arn
            elif resource_type == "AWS::Events::Rule":
                rule_name = name_for(logical)
                clients["events"].put_rule(
                    Name=rule_name,
                    EventPattern=json.dumps(properties["EventPattern"]),
                    State=properties.get("State", "ENABLED"),
                    Description=properties.get("Description", ""),
                )
                clients["events"].put_targets(Rule=rule_name, Targets=properties["Targets"])
                physical[logical] = {"Ref": rule_name, "Arn": f"arn:aws:events:::rule/{rule_name}"}
                deployed.rules[logical] = rule_name
    if not deployed.state_machine_arn:
        raise DeployError("the template has no state machine")
    return deployed


def synthesized_template(context: Mapping[str, Any]) -> dict[str, Any]:
    """Synthesize the CDK app in-process with ``context`` and return the stack's CloudFormation template."""
    from aws_cdk.assertions import Template

    from cdk.application import build_app

    _, stack = build_app(dict(context))
    return dict(Template.from_stack(stack).to_json())


LAB_POLL_INTERVAL_SECONDS = 1
LAB_MAX_WAIT_SECONDS = 20
_lab_deployments: weakref.WeakKeyDictionary[Any, DeployedStack] = weakref.WeakKeyDictionary()


def lab_context(lab: Any, allowed_outpost_arns: list[str]) -> dict[str, Any]:
    """CDK context for the lab: 1 s polls, a short wait bound, no grace before the readiness alarm (a lab test
    reports for its agent itself), the lab's agent principal."""
    return {
        "lifeline:pollIntervalSeconds": LAB_POLL_INTERVAL_SECONDS,
        "lifeline:readinessGraceSeconds": 0,
        "lifeline:maxWaitSeconds": LAB_MAX_WAIT_SECONDS,
        "lifeline:allowedOutpostArns": list(allowed_outpost_arns),
        "lifeline:agentPrincipalArns": [lab.agent_principal.arn],
    }


def lab_deployment(lab: Any, allowed_outpost_arns: list[str] | None = None) -> DeployedStack:
    """The Lifeline stack deployed once per lab (later calls return the same deployment).

    The functions sign IAM tokens for the Outpost-side STS address, the one the lab's local control planes
    verify tokens with (in AWS: the Region's STS endpoint, which both sides use).
    """
    from lab.lab import DEFAULT_OUTPOST_ARN
    from lambdas.constants import ENV_TOKEN_STS_ENDPOINT_URL

    allowed = list(allowed_outpost_arns or [DEFAULT_OUTPOST_ARN])
    if lab not in _lab_deployments:
        context = lab_context(lab, allowed)
        deployed = deploy_stack(
            lab,
            synthesized_template(context),
            overrides={"function_environment": {ENV_TOKEN_STS_ENDPOINT_URL: lab.outpost_region_url}},
        )
        deployed.allowed_outpost_arns = allowed
        _lab_deployments[lab] = deployed
    deployed = _lab_deployments[lab]
    # A second stack would add a second CloudTrail rule, and every event would start two executions.
    if set(allowed) - set(deployed.allowed_outpost_arns):
        raise DeployError(
            f"the lab's Lifeline stack allows {deployed.allowed_outpost_arns}; {allowed} were asked for. "
            "Use an allowed Outpost, or pass every Outpost the lab needs to the first lab_deployment call."
        )
    return deployed
