"""CDK assertion tests of the synthesized Region stack."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Match

from lambdas import constants
from tests.infrastructure.conftest import AGENT_ROLE, CLUSTER_ROLE, OUTPOST_A, OUTPOST_B, Synthesized

HANDLERS = {
    "lambdas.normalise_request.handler.handler",
    "lambdas.create_cluster.handler.handler",
    "lambdas.check_cluster.handler.handler",
    "lambdas.store_secret.handler.handler",
    "lambdas.bootstrap_rbac.handler.handler",
    "lambdas.rollback_rbac.handler.handler",
    "lambdas.watch_readiness.handler.handler",
}
# "*" as a resource only where the service has no resource-level permissions for the action.
WILDCARD_RESOURCE_ACTIONS = {
    "xray:PutTraceSegments", "xray:PutTelemetryRecords", "xray:GetSamplingRules", "xray:GetSamplingTargets",
    "logs:CreateLogDelivery", "logs:GetLogDelivery", "logs:UpdateLogDelivery", "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries", "logs:PutResourcePolicy", "logs:DescribeResourcePolicies", "logs:DescribeLogGroups",
    "ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces", "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses",
}  # fmt: skip


def _statements(synth: Synthesized) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for logical, policy in synth.resources("AWS::IAM::Policy").items():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            found.append((logical, statement))
    return found


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _role_statements(synth: Synthesized, role_fragment: str) -> list[dict[str, Any]]:
    statements = []
    for policy in synth.resources("AWS::IAM::Policy").values():
        roles = json.dumps(policy["Properties"].get("Roles", []))
        if role_fragment in roles:
            statements.extend(policy["Properties"]["PolicyDocument"]["Statement"])
    return statements


def _actions_of(statements: list[dict[str, Any]]) -> set[str]:
    return {action for s in statements for action in _as_list(s["Action"])}


def test_cloudtrail_rule_matches_create_cluster_on_allowed_outposts(synthesized: Synthesized) -> None:
    synthesized.template.has_resource_properties(
        "AWS::Events::Rule",
        {
            "EventPattern": {
                "source": ["aws.eks"],
                "detail-type": ["AWS API Call via CloudTrail"],
                "detail": {
                    "eventSource": ["eks.amazonaws.com"],
                    "eventName": ["CreateCluster"],
                    "errorCode": [{"exists": False}],
                    "requestParameters": {"outpostConfig": {"outpostArns": [OUTPOST_A, OUTPOST_B]}},
                },
            },
            "State": "ENABLED",
        },
    )


def test_provision_rule_matches_the_custom_request_event(synthesized: Synthesized) -> None:
    synthesized.template.has_resource_properties(
        "AWS::Events::Rule",
        {
            "EventPattern": {
                "source": [constants.EVENT_SOURCE],
                "detail-type": [constants.PROVISION_REQUEST_DETAIL_TYPE],
            }
        },
    )


def test_every_rule_targets_the_state_machine_with_retries_and_a_dead_letter_queue(synthesized: Synthesized) -> None:
    rules = synthesized.resources("AWS::Events::Rule")
    (queue_id,) = synthesized.resources("AWS::SQS::Queue")
    (machine_id,) = synthesized.resources("AWS::StepFunctions::StateMachine")
    assert len(rules) == 2
    for rule in rules.values():
        (target,) = rule["Properties"]["Targets"]
        assert target["Arn"] == {"Ref": machine_id}
        assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": [queue_id, "Arn"]}}
        assert target["RetryPolicy"]["MaximumRetryAttempts"] >= 3
        assert target["RetryPolicy"]["MaximumEventAgeInSeconds"] > 0
        assert "RoleArn" in target


def test_dead_letter_queue_is_encrypted_and_tls_only(synthesized: Synthesized) -> None:
    synthesized.template.has_resource_properties("AWS::SQS::Queue", {"SqsManagedSseEnabled": True})
    synthesized.template.has_resource_properties(
        "AWS::SQS::QueuePolicy",
        {"PolicyDocument": {"Statement": Match.array_with([Match.object_like(
            {"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}})])}},
    )


def test_state_machine_is_standard_with_full_logging_and_tracing(synthesized: Synthesized) -> None:
    synthesized.template.has_resource_properties(
        "AWS::StepFunctions::StateMachine",
        {
            "StateMachineType": "STANDARD",
            "TracingConfiguration": {"Enabled": True},
            "LoggingConfiguration": {"Level": "ALL", "IncludeExecutionData": False,
                                     "Destinations": Match.any_value()},
        },
    )


def test_state_machine_definition_has_the_workflow_states(synthesized: Synthesized) -> None:
    (machine,) = synthesized.resources("AWS::StepFunctions::StateMachine").values()
    parts = machine["Properties"]["DefinitionString"]["Fn::Join"][1]
    text = "".join(p if isinstance(p, str) else "0" for p in parts)
    definition = json.loads(text.replace('"0"', '"x"'))
    states = definition["States"]
    assert {"NormaliseRequest", "CreateCluster", "CheckCluster", "WaitForCluster", "StoreSecret", "BootstrapRbac",
            "RollbackRbac", "PublishReady", "WaitForAgents", "WatchReadiness", "PublishFailure", "Skipped",
            "Failed"} <= set(states)
    assert states["WaitForCluster"]["SecondsPath"] == "$.request.poll.intervalSeconds"
    tasks = {name: s for name, s in states.items() if s["Type"] == "Task"}
    for name, task in tasks.items():
        assert task["Retry"], name
        for retry in task["Retry"]:
            assert retry["BackoffRate"] >= 2 and retry["MaxAttempts"] >= 2, name
        if name not in ("PublishFailure", "StoreSecret"):
            assert task["Catch"][0]["Next"] == "PublishFailure", name
    entries = states["PublishReady"]["Parameters"]["Entries"]
    assert entries[0]["DetailType"] == constants.READY_DETAIL_TYPE
    assert states["PublishFailure"]["Parameters"]["Entries"][0]["DetailType"] == constants.FAILED_DETAIL_TYPE
    assert definition["TimeoutSeconds"] > 45 * 60


def test_every_function_runs_one_python_runtime_with_tracing_and_its_own_log_group(synthesized: Synthesized) -> None:
    functions = synthesized.resources("AWS::Lambda::Function")
    assert {f["Properties"]["Handler"] for f in functions.values()} == HANDLERS
    for function in functions.values():
        properties = function["Properties"]
        assert properties["Runtime"] == "python3.11" and properties["Architectures"] == ["x86_64"]
        assert properties["TracingConfig"] == {"Mode": "Active"}
        assert "LogGroup" in properties["LoggingConfig"]
        variables = properties["Environment"]["Variables"]
        assert variables["POWERTOOLS_SERVICE_NAME"] == "lifeline"
        assert variables["POWERTOOLS_METRICS_NAMESPACE"] == "Lifeline"


def _function_env(synth: Synthesized, handler: str) -> dict[str, Any]:
    for function in synth.resources("AWS::Lambda::Function").values():
        if function["Properties"]["Handler"] == handler:
            return dict(function["Properties"]["Environment"]["Variables"])
    raise AssertionError(handler)


def test_function_environments_carry_the_context_parameters(synthesized: Synthesized) -> None:
    normalise = _function_env(synthesized, "lambdas.normalise_request.handler.handler")
    assert json.loads(normalise[constants.ENV_ALLOWED_OUTPOST_ARNS]) == [OUTPOST_A, OUTPOST_B]
    assert normalise[constants.ENV_POLL_INTERVAL_SECONDS] == "30"
    assert normalise[constants.ENV_MAX_WAIT_SECONDS] == "1800"
    store = _function_env(synthesized, "lambdas.store_secret.handler.handler")
    (key_id,) = synthesized.resources("AWS::KMS::Key")
    assert store[constants.ENV_SECRET_KMS_KEY_ID] == {"Fn::GetAtt": [key_id, "Arn"]}
    bootstrap = _function_env(synthesized, "lambdas.bootstrap_rbac.handler.handler")
    assert json.loads(bootstrap[constants.ENV_AGENT_PRINCIPAL_ARNS])[0] == AGENT_ROLE
    assert bootstrap[constants.ENV_BREAKGLASS_GROUP] == "lifeline:breakglass"
    assert bootstrap[constants.ENV_AGENT_GROUP] == "lifeline:agents"
    assert bootstrap[constants.ENV_OPERATORS_GROUP] == "lifeline:operators"
    assert bootstrap[constants.ENV_OPERATORS_CLUSTER_ROLE] == "cluster-admin"


def test_the_operators_binding_takes_its_group_and_cluster_role_from_context(synthesized_full: Synthesized) -> None:
    """RollbackRbac removes what BootstrapRbac created, so both need the same operators' group and role."""
    for handler in ("lambdas.bootstrap_rbac.handler.handler", "lambdas.rollback_rbac.handler.handler"):
        environment = _function_env(synthesized_full, handler)
        assert environment[constants.ENV_OPERATORS_GROUP] == "ops:on-call"
        assert environment[constants.ENV_OPERATORS_CLUSTER_ROLE] == "edit"


def test_secrets_key_rotates_and_lets_agents_decrypt_only_through_secrets_manager(synthesized: Synthesized) -> None:
    (key,) = synthesized.resources("AWS::KMS::Key").values()
    assert key["Properties"]["EnableKeyRotation"] is True
    statements = key["Properties"]["KeyPolicy"]["Statement"]
    (agents,) = [s for s in statements if s.get("Sid") == "AgentsDecryptLifelineSecrets"]
    assert agents["Action"] == "kms:Decrypt"
    assert AGENT_ROLE in json.dumps(agents["Principal"])
    assert "kms:ViaService" in agents["Condition"]["StringEquals"]


def test_no_iam_statement_allows_every_action(synthesized: Synthesized, synthesized_full: Synthesized) -> None:
    for synth in (synthesized, synthesized_full):
        for logical, statement in _statements(synth):
            for action in _as_list(statement["Action"]):
                assert action != "*" and not action.endswith(":*"), (logical, action)


@pytest.mark.parametrize("variant", ["synthesized", "synthesized_full"])
def test_wildcard_resources_only_for_actions_without_resource_level_permissions(
    variant: str, request: pytest.FixtureRequest
) -> None:
    synth: Synthesized = request.getfixturevalue(variant)
    for logical, statement in _statements(synth):
        if "*" in _as_list(statement["Resource"]):
            assert set(_as_list(statement["Action"])) <= WILDCARD_RESOURCE_ACTIONS, (logical, statement)


def test_secret_permissions_are_scoped_to_the_lifeline_prefix_and_the_key(synthesized: Synthesized) -> None:
    statements = _role_statements(synthesized, "StoreSecretRole")
    secret_statements = [s for s in statements if str(s["Action"]).count("secretsmanager:")]
    assert secret_statements
    for statement in secret_statements:
        resource = json.dumps(statement["Resource"])
        assert ":secret:lifeline/*" in resource
        assert "secretsmanager:DeleteSecret" not in _as_list(statement["Action"])
    kms_statements = [s for s in statements if "kms:Encrypt" in _as_list(s["Action"])]
    (key_id,) = synthesized.resources("AWS::KMS::Key")
    assert kms_statements[0]["Resource"] == {"Fn::GetAtt": [key_id, "Arn"]}


def test_cluster_permissions(synthesized: Synthesized, synthesized_full: Synthesized) -> None:
    admin = _role_statements(synthesized, "ClusterAdminRole")
    assert _actions_of(admin) >= {"eks:CreateCluster", "iam:PassRole"}
    (pass_role,) = [s for s in admin if "iam:PassRole" in _as_list(s["Action"])]
    assert pass_role["Resource"] == CLUSTER_ROLE
    assert pass_role["Condition"] == {"StringEquals": {"iam:PassedToService": "eks.amazonaws.com"}}
    check = _role_statements(synthesized, "CheckClusterRole")
    assert _actions_of(check) - {"logs:CreateLogStream", "logs:PutLogEvents", "xray:PutTraceSegments",
                                 "xray:PutTelemetryRecords"} == {"eks:DescribeCluster"}
    narrow = _role_statements(synthesized_full, "ClusterAdminRole")
    eks_resources = json.dumps([s["Resource"] for s in narrow if "eks:CreateCluster" in _as_list(s["Action"])])
    assert ":cluster/prod-*" in eks_resources


def test_state_machine_role_invokes_only_the_workflow_functions_and_publishes_on_the_default_bus(
    synthesized: Synthesized,
) -> None:
    statements = _role_statements(synthesized, "StateMachineRole")
    invoke = [s for s in statements if "lambda:InvokeFunction" in _as_list(s["Action"])]
    functions = set(synthesized.resources("AWS::Lambda::Function"))
    invoked = {r["Fn::GetAtt"][0] if "Fn::GetAtt" in r else r["Fn::Join"][1][0]["Fn::GetAtt"][0]
               for s in invoke for r in _as_list(s["Resource"])}
    assert invoked == functions
    (put_events,) = [s for s in statements if "events:PutEvents" in _as_list(s["Action"])]
    assert ":event-bus/default" in json.dumps(put_events["Resource"])


def test_alarm_on_failed_and_timed_out_executions(synthesized: Synthesized) -> None:
    alarms = synthesized.resources("AWS::CloudWatch::Alarm")
    (execution_alarm,) = [a for a in alarms.values() if "Metrics" in a["Properties"]]
    metrics = execution_alarm["Properties"]["Metrics"]
    names = {m["MetricStat"]["Metric"]["MetricName"] for m in metrics if "MetricStat" in m}
    assert names == {"ExecutionsFailed", "ExecutionsTimedOut"}
    assert any(m.get("Expression") == "failed + timedOut" for m in metrics)
    assert execution_alarm["Properties"]["Threshold"] == 1
    assert execution_alarm["Properties"]["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"


def test_alarm_topic_and_vpc_placement_in_the_full_variant(synthesized_full: Synthesized) -> None:
    for alarm in synthesized_full.resources("AWS::CloudWatch::Alarm").values():
        assert alarm["Properties"]["AlarmActions"] == ["arn:aws:sns:us-west-2:123456789012:ops-alarms"]
    in_vpc = [f for f in synthesized_full.resources("AWS::Lambda::Function").values() if "VpcConfig" in f["Properties"]]
    assert sorted(f["Properties"]["Handler"] for f in in_vpc) == [
        "lambdas.bootstrap_rbac.handler.handler", "lambdas.rollback_rbac.handler.handler"
    ]
    assert in_vpc[0]["Properties"]["VpcConfig"]["SubnetIds"] == ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"]
    assert synthesized_full.resources("AWS::CloudTrail::Trail")


def test_lambda_asset_holds_the_workflow_code_and_the_agents_shared_modules(synthesized: Synthesized) -> None:
    from pathlib import Path

    from aws_cdk import Stage

    (function,) = [f for f in synthesized.resources("AWS::Lambda::Function").values()
                   if f["Properties"]["Handler"].startswith("lambdas.store_secret")]
    asset_hash = function["Properties"]["Code"]["S3Key"].removesuffix(".zip")
    asset = Path(Stage.of(synthesized.stack).outdir) / f"asset.{asset_hash}"  # type: ignore[union-attr]
    for module in HANDLERS:
        assert (asset / (module.rsplit(".", 1)[0].replace(".", "/") + ".py")).is_file(), module
    for shared in ("contract.py", "rbac.py", "eks_token.py"):
        assert (asset / "lifeline_agent" / shared).is_file()
    compiled = list(asset.rglob("*.pyc"))  # hash-checked: time stamps do not survive staging and the zip
    assert compiled and all(p.read_bytes()[4:8] == b"\x01\x00\x00\x00" for p in compiled)


LOGS = {"logs:CreateLogStream", "logs:PutLogEvents"}
XRAY = {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}
EXPECTED_ROLE_ACTIONS = {
    "NormaliseRequestRole": LOGS | XRAY,
    "CheckClusterRole": LOGS | XRAY | {"eks:DescribeCluster"},
    "StoreSecretRole": LOGS | XRAY | {
        "secretsmanager:CreateSecret", "secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue",
        "secretsmanager:PutSecretValue", "secretsmanager:TagResource", "secretsmanager:PutResourcePolicy",
        "kms:Decrypt", "kms:Encrypt",
        "kms:GenerateDataKey",
    },
    "ClusterAdminRole": LOGS | XRAY | {
        "eks:CreateCluster", "eks:TagResource", "eks:CreateAccessEntry", "eks:DescribeAccessEntry",
        "eks:UpdateAccessEntry", "eks:DeleteAccessEntry", "iam:PassRole",
    },
    "StateMachineRole": XRAY | {
        "lambda:InvokeFunction", "events:PutEvents", "xray:GetSamplingRules", "xray:GetSamplingTargets",
        "logs:CreateLogDelivery", "logs:GetLogDelivery", "logs:UpdateLogDelivery", "logs:DeleteLogDelivery",
        "logs:ListLogDeliveries", "logs:PutResourcePolicy", "logs:DescribeResourcePolicies",
        "logs:DescribeLogGroups",
    },
    "StateMachineEventsRole": {"states:StartExecution"},
    "WatchReadinessRole": LOGS | XRAY | {"cloudwatch:PutMetricAlarm"},
}  # fmt: skip


def test_each_role_has_exactly_the_actions_its_step_needs(synthesized: Synthesized) -> None:
    roles = synthesized.resources("AWS::IAM::Role")
    assert len(roles) == len(EXPECTED_ROLE_ACTIONS)
    for fragment, expected in EXPECTED_ROLE_ACTIONS.items():
        (logical,) = [r for r in roles if fragment in r and not (fragment == "StateMachineRole" and "Events" in r)]
        assert _actions_of(_role_statements(synthesized, logical)) == expected, fragment
