"""Step Functions runs Lambda functions from their deployed zip in a sandbox interpreter (error names reach
Catch, a timeout kills the sandbox), and EventBridge rules with state-machine targets start executions — on the
lab's Region server, through boto3."""

from __future__ import annotations

import io
import json
import os
import time
import uuid
import zipfile
from typing import Any

import pytest

ROLE_POLICY = json.dumps({"Version": "2012-10-17", "Statement": []})


# The deployed code of the test functions: run by the lab's Lambda runtime from this zip, in its own interpreter.
HANDLERS = """
import os
import time


class BootstrapRefused(Exception):
    pass


def echo_handler(event, context):
    return {
        "event": event,
        "function_name": context.function_name,
        "remaining_ms_positive": context.get_remaining_time_in_millis() > 0,
        "memory": context.memory_limit_in_mb,
        "arn": context.invoked_function_arn,
        "env_flavour": os.environ.get("FLAVOUR"),
        "endpoint": os.environ.get("AWS_ENDPOINT_URL"),
        "pid": os.getpid(),
    }


def failing_handler(event, context):
    raise BootstrapRefused(f"refused {event.get('cluster')}")


def sleeping_handler(event, context):
    time.sleep(30)
"""


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("handlers.py", HANDLERS)
    return buffer.getvalue()


def _role(lab: Any) -> str:
    iam = lab.client("iam")
    try:
        return str(iam.get_role(RoleName="lab-test-lambda")["Role"]["Arn"])
    except iam.exceptions.NoSuchEntityException:
        return str(iam.create_role(RoleName="lab-test-lambda", AssumeRolePolicyDocument=ROLE_POLICY)["Role"]["Arn"])


def _function(lab: Any, handler: str, timeout: int = 30) -> str:
    name = f"fn-{uuid.uuid4().hex[:8]}"
    created = lab.client("lambda").create_function(
        FunctionName=name,
        Runtime="python3.11",
        Role=_role(lab),
        Handler=f"handlers.{handler}",
        Code={"ZipFile": _zip()},
        Environment={"Variables": {"FLAVOUR": "lab"}},
        MemorySize=256,
        Timeout=timeout,
    )
    return str(created["FunctionArn"])


def _state_machine(lab: Any, definition: dict[str, Any]) -> str:
    return str(
        lab.client("stepfunctions").create_state_machine(
            name=f"sm-{uuid.uuid4().hex[:8]}", definition=json.dumps(definition), roleArn=_role(lab)
        )["stateMachineArn"]
    )


def _wait(lab: Any, execution_arn: str) -> dict[str, Any]:
    sfn = lab.client("stepfunctions")
    deadline = time.monotonic() + 30
    while True:
        execution = sfn.describe_execution(executionArn=execution_arn)
        if execution["status"] != "RUNNING":
            return execution  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, "execution still RUNNING"
        time.sleep(0.1)


def _invoke_definition(function_arn: str) -> dict[str, Any]:
    return {
        "StartAt": "Call",
        "States": {
            "Call": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": function_arn, "Payload.$": "$"},
                "OutputPath": "$.Payload",
                "Catch": [{"ErrorEquals": ["BootstrapRefused"], "Next": "Refused"}],
                "End": True,
            },
            "Refused": {"Type": "Fail", "Error": "Lifeline.BootstrapRefused", "Cause": "caught"},
        },
    }


def test_lambda_task_runs_the_deployed_handler_in_its_own_interpreter(lab: Any) -> None:
    function_arn = _function(lab, "echo_handler")
    machine = _state_machine(lab, _invoke_definition(function_arn))
    started = lab.client("stepfunctions").start_execution(
        stateMachineArn=machine, name="run-1", input=json.dumps({"cluster": "c1"})
    )
    execution = _wait(lab, started["executionArn"])
    assert execution["status"] == "SUCCEEDED", execution
    output = json.loads(execution["output"])
    assert output["event"] == {"cluster": "c1"}
    assert output["env_flavour"] == "lab"
    assert output["endpoint"] == lab.region_url
    assert output["memory"] == 256 and output["remaining_ms_positive"]
    assert output["arn"].startswith(function_arn)
    assert output["pid"] != os.getpid() and os.environ.get("FLAVOUR") is None  # its own process and environment


def test_handler_exception_name_reaches_catch(lab: Any) -> None:
    machine = _state_machine(lab, _invoke_definition(_function(lab, "failing_handler")))
    started = lab.client("stepfunctions").start_execution(
        stateMachineArn=machine, name="run-1", input=json.dumps({"cluster": "c9"})
    )
    execution = _wait(lab, started["executionArn"])
    assert execution["status"] == "FAILED"
    assert execution["error"] == "Lifeline.BootstrapRefused"


def test_a_function_past_its_timeout_is_killed_and_fails_as_timed_out(lab: Any) -> None:
    answer = lab.client("lambda").invoke(FunctionName=_function(lab, "sleeping_handler", timeout=1), Payload=b"{}")
    assert answer.get("FunctionError")
    error = json.loads(answer["Payload"].read())
    assert error["errorType"] == "Sandbox.Timedout" and "1.00 seconds" in error["errorMessage"]


def _rule_to_machine(lab: Any, machine: str, source: str, **target: Any) -> str:
    events = lab.client("events")
    rule = f"rule-{uuid.uuid4().hex[:8]}"
    events.put_rule(Name=rule, EventPattern=json.dumps({"source": [source], "detail-type": ["Test"]}))
    events.put_targets(Rule=rule, Targets=[{"Id": "sfn", "Arn": machine, "RoleArn": _role(lab), **target}])
    return rule


def _put(lab: Any, source: str, detail: dict[str, Any]) -> None:
    entries = [{"Source": source, "DetailType": "Test", "Detail": json.dumps(detail)}]
    response = lab.client("events").put_events(Entries=entries)
    assert response["FailedEntryCount"] == 0


def _pass_machine(lab: Any) -> str:
    return _state_machine(lab, {"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}})


def test_rule_with_state_machine_target_starts_an_execution_with_the_event(lab: Any) -> None:
    source = f"lab.test.{uuid.uuid4().hex[:6]}"
    machine = _pass_machine(lab)
    rule = _rule_to_machine(lab, machine, source)
    _put(lab, source, {"n": 1})
    _put(lab, source, {"n": 2})
    _put(lab, "other.source", {"n": 3})
    delivered = [d for d in lab.region.delivered_events() if d["rule"] == rule]
    assert [d["input"]["detail"] for d in delivered] == [{"n": 1}, {"n": 2}]
    assert delivered[0]["input"]["source"] == source
    assert delivered[0]["input"]["time"].endswith("Z")
    assert delivered[0]["executionArn"] != delivered[1]["executionArn"]
    for item in delivered:
        execution = _wait(lab, item["executionArn"])
        assert execution["status"] == "SUCCEEDED"
        assert json.loads(execution["output"])["detail"] == item["input"]["detail"]
    recorded = lab.region.events(source=source)
    assert [e["detail"] for e in recorded] == [{"n": 1}, {"n": 2}]


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ({"Input": '{"fixed": true}'}, {"fixed": True}),
        ({"InputPath": "$.detail"}, {"cluster": "c1"}),
        (
            {"InputTransformer": {"InputPathsMap": {"c": "$.detail.cluster"}, "InputTemplate": '{"name": "<c>"}'}},
            {"name": "c1"},
        ),
    ],
)
def test_target_input_options_are_honoured(lab: Any, target: dict[str, Any], expected: dict[str, Any]) -> None:
    source = f"lab.test.{uuid.uuid4().hex[:6]}"
    rule = _rule_to_machine(lab, _pass_machine(lab), source, **target)
    _put(lab, source, {"cluster": "c1"})
    (delivered,) = [d for d in lab.region.delivered_events() if d["rule"] == rule]
    assert delivered["input"] == expected


def test_disabled_rule_delivers_nothing(lab: Any) -> None:
    source = f"lab.test.{uuid.uuid4().hex[:6]}"
    rule = _rule_to_machine(lab, _pass_machine(lab), source)
    lab.client("events").disable_rule(Name=rule)
    _put(lab, source, {"n": 1})
    assert [d for d in lab.region.delivered_events() if d["rule"] == rule] == []
    assert len(lab.region.events(source=source)) == 1
