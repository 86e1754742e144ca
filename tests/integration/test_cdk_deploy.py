"""What a user deploys is what the lab runs: the stack deployed with the pinned CDK CLI (``cdk bootstrap`` +
``cdk deploy``, lab.deploy.lab_deployment) into the lab Region, checked against the template the CLI
synthesized, and its Lambda functions running the code asset and layer CloudFormation received.

The CloudTrail path end to end on this deployment is tests/integration/test_workflow_execution.py.
"""

from __future__ import annotations

import contextlib
import io
import json
import sysconfig
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.deploy import LAB_ALARM_TOPIC, STACK_NAME, DeployedStack, lab_deployment
from tests.integration.test_workflow_execution import cloudtrail_event, run

pytestmark = pytest.mark.xdist_group("lifeline-workflow")  # the same worker (and deployment) as the workflow tests
REPO = Path(__file__).resolve().parents[2]
# Replaces NormaliseRequest's handler module in a copy of its asset: it reports where the sandbox imports from.
PATH_PROBE = """
import sys, sysconfig
def handler(event, context):
    paths = sysconfig.get_paths()
    return {"path": sys.path, "noSite": sys.flags.no_site, "isolated": sys.flags.isolated,
            "basePrefix": sys.base_prefix, "sitePackages": sorted({paths["purelib"], paths["platlib"]})}
"""


@pytest.fixture(scope="module")
def deployed(lab: Any) -> DeployedStack:
    return lab_deployment(lab)


@pytest.fixture(scope="module")
def template(lab: Any, deployed: DeployedStack) -> dict[str, Any]:
    return dict(json.loads((lab.state_dir / "cdk" / "cdk.out" / f"{STACK_NAME}.template.json").read_text()))


def _resources(template: dict[str, Any], resource_type: str) -> dict[str, Any]:
    return {logical: r for logical, r in template["Resources"].items() if r["Type"] == resource_type}


def test_the_stack_was_made_by_cdk_bootstrap_and_cdk_deploy(lab: Any, deployed: DeployedStack,
                                                            template: dict[str, Any]) -> None:  # fmt: skip
    assert [run.command[1] for run in deployed.cli_runs] == ["bootstrap", "deploy"]
    assert all(run.command[0].endswith("node_modules/.bin/cdk") for run in deployed.cli_runs)
    statuses = {s["StackName"]: s["StackStatus"] for s in lab.client("cloudformation").describe_stacks()["Stacks"]}
    assert statuses == {"CDKToolkit": "CREATE_COMPLETE", STACK_NAME: "CREATE_COMPLETE"}
    created = {r["LogicalResourceId"] for r in lab.client("cloudformation").list_stack_resources(
        StackName=STACK_NAME)["StackResourceSummaries"]}  # fmt: skip
    assert set(template["Resources"]) - {"CDKMetadata"} <= created  # AWS::CDK::Metadata: moto has no model
    assert len(deployed.functions) == 7 and len(deployed.rules) == 2


def test_cloudformation_created_alarms_exist_with_the_templates_properties(
    lab: Any, deployed: DeployedStack, template: dict[str, Any]
) -> None:
    alarms = _resources(template, "AWS::CloudWatch::Alarm")
    assert len(alarms) == 2
    names = [deployed.physical[logical] for logical in alarms]
    found = {a["AlarmName"]: a for a in lab.client("cloudwatch").describe_alarms(AlarmNames=names)["MetricAlarms"]}
    assert set(found) == set(names)
    topic = lab.client("sns").get_topic_attributes(TopicArn=f"arn:aws:sns:{lab.region.name}:"
                                                   f"{lab.region.account_id}:{LAB_ALARM_TOPIC}")  # fmt: skip
    for logical, resource in alarms.items():
        wanted, alarm = resource["Properties"], found[deployed.physical[logical]]
        for key in ("AlarmDescription", "ComparisonOperator", "EvaluationPeriods", "TreatMissingData"):
            assert alarm[key] == wanted[key], key
        assert float(alarm["Threshold"]) == float(wanted["Threshold"])
        # The lab deploys with an alarm topic (lifeline:alarmTopicArn): ALARM notifies it, OK does not.
        assert wanted["AlarmActions"] == [topic["Attributes"]["TopicArn"]] and "OKActions" not in wanted
        assert (alarm["AlarmActions"], alarm["OKActions"]) == (wanted["AlarmActions"], [])
        if "Metrics" in wanted:
            assert [m["Id"] for m in alarm["Metrics"]] == [m["Id"] for m in wanted["Metrics"]]
            expressions = {m["Id"]: m.get("Expression") for m in alarm["Metrics"]}
            assert expressions["expr_1"] == "failed + timedOut"
            periods = {m["Id"]: (m["MetricStat"]["Period"], m["MetricStat"]["Stat"])
                       for m in wanted["Metrics"] if "MetricStat" in m}  # fmt: skip
            assert periods == {"failed": (300, "Sum"), "timedOut": (300, "Sum")}
            assert {m["Id"]: (m["MetricStat"]["Period"], m["MetricStat"]["Stat"])
                    for m in alarm["Metrics"] if "MetricStat" in m} == periods  # fmt: skip
            stats = [m["MetricStat"]["Metric"] for m in alarm["Metrics"] if "MetricStat" in m]
            dimensions = [d for metric in stats for d in metric["Dimensions"]]
            assert dimensions and all(d == {"Name": "StateMachineArn", "Value": deployed.state_machine_arn}
                                      for d in dimensions)  # fmt: skip
        else:
            assert alarm["MetricName"] == wanted["MetricName"] and alarm["Namespace"] == wanted["Namespace"]
            assert (alarm["Period"], alarm["Statistic"]) == (wanted["Period"], wanted["Statistic"]) == (300, "Maximum")
            queue = deployed.dead_letter_queue_url.rsplit("/", 1)[-1]
            assert alarm["Dimensions"] == [{"Name": "QueueName", "Value": queue}]


def test_the_queue_policy_and_the_state_machines_logging_and_tracing_are_applied(
    lab: Any, deployed: DeployedStack, template: dict[str, Any]
) -> None:
    attributes = lab.client("sqs").get_queue_attributes(QueueUrl=deployed.dead_letter_queue_url,
                                                        AttributeNames=["Policy"])["Attributes"]  # fmt: skip
    statements = json.loads(attributes["Policy"])["Statement"]
    assert {s["Effect"] for s in statements} == {"Allow", "Deny"}
    assert any(s.get("Principal") == {"Service": "events.amazonaws.com"} for s in statements)
    machine = lab.client("stepfunctions").describe_state_machine(stateMachineArn=deployed.state_machine_arn)
    (wanted,) = [r["Properties"] for r in _resources(template, "AWS::StepFunctions::StateMachine").values()]
    assert machine["loggingConfiguration"]["level"] == wanted["LoggingConfiguration"]["Level"]
    assert machine["loggingConfiguration"]["destinations"][0]["cloudWatchLogsLogGroup"]["logGroupArn"]
    assert machine["tracingConfiguration"] == {"enabled": wanted["TracingConfiguration"]["Enabled"]}


def test_the_log_groups_keep_their_key_and_the_functions_their_log_group_and_layer(
    lab: Any, deployed: DeployedStack, template: dict[str, Any]
) -> None:
    groups = _resources(template, "AWS::Logs::LogGroup")
    assert len(groups) == 8  # one per function and the state machine's
    logs = lab.client("logs")
    (key,) = _resources(template, "AWS::KMS::Key")
    for logical, group in groups.items():
        assert group["Properties"]["KmsKeyId"] == {"Fn::GetAtt": [key, "Arn"]}
        name = deployed.physical[logical]
        (described,) = [g for g in logs.describe_log_groups(logGroupNamePrefix=name)["logGroups"]
                        if g["logGroupName"] == name]  # fmt: skip
        assert described.get("kmsKeyId") == deployed.kms_key_arn, described
        assert described["retentionInDays"] == group["Properties"]["RetentionInDays"]
    ((layer_logical, layer),) = _resources(template, "AWS::Lambda::LayerVersion").items()
    layer_arn = deployed.physical[layer_logical]
    name, version = layer_arn.split(":")[6:8]
    published = lab.client("lambda").get_layer_version(LayerName=name, VersionNumber=int(version))
    assert published["CompatibleArchitectures"] == layer["Properties"]["CompatibleArchitectures"] == ["x86_64"]
    for logical, function in _resources(template, "AWS::Lambda::Function").items():
        configuration = lab.client("lambda").get_function_configuration(FunctionName=deployed.physical[logical])
        group = function["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
        assert configuration.get("LoggingConfig") == {"LogFormat": "Text", "LogGroup": deployed.physical[group]}
        assert [layer["Arn"] for layer in configuration["Layers"]] == [layer_arn]


def test_the_stack_has_the_templates_outputs_and_the_cli_printed_them(
    lab: Any, deployed: DeployedStack, template: dict[str, Any]
) -> None:
    (stack,) = lab.client("cloudformation").describe_stacks(StackName=STACK_NAME)["Stacks"]
    outputs = {o["OutputKey"]: o for o in stack.get("Outputs", [])}
    assert set(outputs) == set(template["Outputs"])
    for key, wanted in template["Outputs"].items():
        assert outputs[key].get("Description") == wanted.get("Description"), key
    writer = template["Outputs"]["SecretWriterRoleArn"]["Value"]["Fn::GetAtt"][0]
    assert outputs["SecretWriterRoleArn"]["OutputValue"] == lab.client("iam").get_role(
        RoleName=deployed.physical[writer])["Role"]["Arn"]  # fmt: skip
    assert outputs["StateMachineArn"]["OutputValue"] == deployed.state_machine_arn
    assert outputs["SecretsKeyArn"]["OutputValue"] == deployed.kms_key_arn
    assert json.loads(outputs["AgentPolicyDocument"]["OutputValue"])["Statement"]
    printed = deployed.cli_runs[1].output
    assert f"{STACK_NAME}.StateMachineArn = {deployed.state_machine_arn}\n" in printed


def test_functions_run_the_deployed_asset_and_layer_in_a_clean_interpreter(lab: Any, deployed: DeployedStack) -> None:
    function = lab.client("lambda").get_function(FunctionName=deployed.function_named("NormaliseRequest"))
    assert len(function["Configuration"]["Layers"]) == 1
    answer = lab.client("lambda").invoke(FunctionName=function["Configuration"]["FunctionName"],
                                         Payload=json.dumps({"not": "an event"}).encode())  # fmt: skip
    assert answer.get("FunctionError"), answer
    assert json.loads(answer["Payload"].read())["errorType"] == "InvalidRequest"
    running = lab.region.hooks.sandboxes.running()
    (pid, _, path), *_ = [r for r in running if r[1] == function["Configuration"]["FunctionName"]]
    root = lab.region.hooks.sandboxes.root
    assert len(path) == 3 and all(Path(p).is_relative_to(root) or "runtime-sdk" in p for p in path), path
    assert Path(path[1]).name == "python" and "runtime-sdk" in path[2]
    environment = dict(line.split("=", 1) for line in Path(f"/proc/{pid}/environ").read_text().split("\0") if line)
    assert not {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"} & set(environment)
    assert environment["LAMBDA_TASK_ROOT"] == path[0]
    assert "-I" in Path(f"/proc/{pid}/cmdline").read_text().split("\0")
    assert not any(p.startswith(sysconfig.get_paths()["purelib"]) for p in path)  # not the dev virtualenv


def _asset_of(lab: Any, deployed: DeployedStack, template: dict[str, Any], step: str) -> tuple[str, bytes]:
    name = deployed.function_named(step)
    (logical,) = [k for k, v in deployed.functions.items() if v == name]
    code = template["Resources"][logical]["Properties"]["Code"]
    return name, lab.client("s3").get_object(Bucket=code["S3Bucket"], Key=code["S3Key"])["Body"].read()


def _rezipped(archive: bytes, change: Callable[[str, bytes], bytes | None]) -> bytes:
    """A copy of a zip in which ``change(member, content)`` gives each member's new content (None: left out)."""
    copy = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(archive)) as original, zipfile.ZipFile(copy, "w") as changed:
        for member in original.namelist():
            content = change(member, original.read(member))
            if content is not None:
                changed.writestr(member, content)
    return copy.getvalue()


@contextlib.contextmanager
def _code_replaced(lab: Any, name: str, code: bytes, original: bytes) -> Iterator[None]:
    functions = lab.client("lambda")
    functions.update_function_code(FunctionName=name, ZipFile=code)
    try:
        yield
    finally:
        functions.update_function_code(FunctionName=name, ZipFile=original)


def test_the_sandbox_imports_only_from_the_asset_its_layer_the_runtime_sdk_and_the_standard_library(
    lab: Any, deployed: DeployedStack, template: dict[str, Any]
) -> None:
    name, asset = _asset_of(lab, deployed, template, "NormaliseRequest")
    def to_probe(member: str, content: bytes) -> bytes | None:
        if member.startswith("lambdas/normalise_request/__pycache__/handler."):
            return None  # its byte code is compiled unchecked-hash (cdk/assets.py): it would win over the source
        return PATH_PROBE.encode() if member == "lambdas/normalise_request/handler.py" else content

    probe = _rezipped(asset, to_probe)
    with _code_replaced(lab, name, probe, asset):
        answer = lab.client("lambda").invoke(FunctionName=name, Payload=b"{}")
        seen = json.loads(answer["Payload"].read())
    assert not answer.get("FunctionError"), seen
    assert (seen["noSite"], seen["isolated"]) == (1, 1)  # python -I -S: no site-packages, no PYTHON* variables
    root = lab.region.hooks.sandboxes.root
    ours = [p for p in seen["path"] if Path(p).is_relative_to(root) or "runtime-sdk" in p]
    assert len(ours) == 3 and seen["path"][:3] == ours, seen["path"]  # code, the layer's python/, boto3: first
    rest = [Path(p) for p in seen["path"][3:]]
    assert rest and all(p.is_relative_to(seen["basePrefix"]) for p in rest), rest  # the interpreter's own stdlib
    assert not any(p.is_relative_to(site) for p in rest for site in seen["sitePackages"]), rest
    assert not any(p.is_relative_to(REPO) for p in rest), rest  # e.g. the worker's folder (python without -I)


def test_a_module_missing_from_the_layer_fails_the_function_even_where_the_interpreter_has_it(
    lab: Any, deployed: DeployedStack, template: dict[str, Any]
) -> None:
    name = deployed.function_named("NormaliseRequest")
    functions = lab.client("lambda")
    (layer,) = functions.get_function(FunctionName=name)["Configuration"]["Layers"]
    (content,) = [r["Properties"]["Content"] for r in _resources(template, "AWS::Lambda::LayerVersion").values()]
    original = lab.client("s3").get_object(Bucket=content["S3Bucket"], Key=content["S3Key"])["Body"].read()
    assert any(m.startswith("python/pydantic_core/") for m in zipfile.ZipFile(io.BytesIO(original)).namelist())
    without = _rezipped(original, lambda member, content: None
                        if member.startswith("python/pydantic_core/") else content)  # fmt: skip
    published = functions.publish_layer_version(LayerName=layer["Arn"].split(":")[6], Content={"ZipFile": without},
                                                CompatibleRuntimes=["python3.11"])  # fmt: skip
    functions.update_function_configuration(FunctionName=name, Layers=[published["LayerVersionArn"]])
    try:
        answer = functions.invoke(FunctionName=name, Payload=json.dumps({"not": "an event"}).encode())
        error = json.loads(answer["Payload"].read())
    finally:
        functions.update_function_configuration(FunctionName=name, Layers=[layer["Arn"]])
    assert answer.get("FunctionError"), error
    assert error["errorType"] == "Runtime.ImportModuleError" and "pydantic_core" in error["errorMessage"], error
    restored = functions.invoke(FunctionName=name, Payload=json.dumps({"not": "an event"}).encode())
    assert json.loads(restored["Payload"].read())["errorType"] == "InvalidRequest"


def test_a_module_missing_from_the_asset_fails_the_workflow_with_the_import_error(
    lab: Any, deployed: DeployedStack, template: dict[str, Any], unique_name: str
) -> None:
    name = deployed.function_named("NormaliseRequest")
    (logical,) = [k for k, v in deployed.functions.items() if v == name]
    code = template["Resources"][logical]["Properties"]["Code"]
    asset = lab.client("s3").get_object(Bucket=code["S3Bucket"], Key=code["S3Key"])["Body"].read()
    doctored = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(asset)) as original, zipfile.ZipFile(doctored, "w") as copy:
        members = original.namelist()
        assert "lambdas/normalise_request/logic.py" in members
        for member in members:
            if member != "lambdas/normalise_request/logic.py":
                copy.writestr(member, original.read(member))
    functions = lab.client("lambda")
    functions.update_function_code(FunctionName=name, ZipFile=doctored.getvalue())
    try:
        result = run(lab, deployed, cloudtrail_event(unique_name))
    finally:
        functions.update_function_code(FunctionName=name, ZipFile=asset)
    assert result["status"] == "FAILED"
    assert "Runtime.ImportModuleError" in result.get("cause", "") + result.get("error", "")
    assert "No module named 'lambdas.normalise_request.logic'" in result.get("cause", "")
    restored = run(lab, deployed, cloudtrail_event(unique_name))
    history = lab.client("stepfunctions").get_execution_history(executionArn=restored["executionArn"],
                                                                maxResults=1000)["events"]  # fmt: skip
    exited = {e["stateExitedEventDetails"]["name"]: e["stateExitedEventDetails"] for e in history
              if "stateExitedEventDetails" in e}  # fmt: skip
    assert json.loads(exited["NormaliseRequest"]["output"])["request"]["clusterName"] == unique_name, exited
    assert "CreateRequested" in exited  # the workflow went on past the restored step
