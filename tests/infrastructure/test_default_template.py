"""Nothing of the lab leaks into what a user deploys: the template synthesized with exactly the default
cdk.json (its context as it is, the dependencies layer included) has none of the lab's settings, which reach
the lab's stack only as ``-c`` context (lab.deploy.lab_context) or through the lab's own Lambda runtime
(lab/region/lambda_sandbox.py). The same checks on the template the lab deploys show they can fail."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from cdk.settings import DEFAULT_READINESS_GRACE_SECONDS
from lab.deploy import LAB_ALARM_TOPIC, lab_context
from lab.lab import DEFAULT_OUTPOST_ARN
from lambdas import constants
from tests.infrastructure.conftest import Synthesized, _synthesize

DEFAULT_CONTEXT = json.loads((Path(__file__).resolve().parents[2] / "cdk.json").read_text())["context"]
LAB_AGENT = "arn:aws:iam::123456789012:user/lifeline-agent"  # the lab's agent principal (lab.lab.Lab.start)
LAB_TOPIC = f"arn:aws:sns:us-west-2:123456789012:{LAB_ALARM_TOPIC}"
# Found case-insensitively anywhere in the template: the lab's addresses, principal, Outpost, alarm topic, and
# the lab-only variables its Lambda runtime adds (AWS_ENDPOINT_URL, the token STS address, MOTO_PORT, LAB_*).
LAB_MARKERS = ("127.0.0.1", "localhost", LAB_AGENT, DEFAULT_OUTPOST_ARN, LAB_ALARM_TOPIC, "lab-", "lab_",
               constants.ENV_TOKEN_STS_ENDPOINT_URL, "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "moto")  # fmt: skip


@pytest.fixture(scope="module")
def default() -> Synthesized:
    return _synthesize(DEFAULT_CONTEXT)


@pytest.fixture(scope="module")
def lab_template() -> Synthesized:
    """What the lab deploys: cdk.json's context with the lab's ``-c`` settings over it, as the CLI merges them."""
    lab = SimpleNamespace(agent_principal=SimpleNamespace(arn=LAB_AGENT))
    return _synthesize({**DEFAULT_CONTEXT, **lab_context(lab, [DEFAULT_OUTPOST_ARN], LAB_TOPIC)})


def _environment(synthesized: Synthesized) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for function in synthesized.resources("AWS::Lambda::Function").values():
        merged.update((function["Properties"].get("Environment") or {}).get("Variables") or {})
    return merged


def _grace_seconds(synthesized: Synthesized) -> list[int]:
    (machine,) = synthesized.resources("AWS::StepFunctions::StateMachine").values()
    parts = machine["Properties"]["DefinitionString"]["Fn::Join"][1]
    definition = "".join(part if isinstance(part, str) else "<ref>" for part in parts)
    return [int(seconds) for seconds in re.findall(r'"Seconds":(\d+)', definition)]


def _lab_settings_in(synthesized: Synthesized) -> list[str]:
    text = json.dumps(synthesized.json).lower()
    found = [marker for marker in LAB_MARKERS if marker.lower() in text]
    environment = _environment(synthesized)
    if environment.get(constants.ENV_POLL_INTERVAL_SECONDS) != str(DEFAULT_CONTEXT["lifeline:pollIntervalSeconds"]):
        found.append(f"poll interval {environment.get(constants.ENV_POLL_INTERVAL_SECONDS)}")
    if environment.get(constants.ENV_MAX_WAIT_SECONDS) != str(DEFAULT_CONTEXT["lifeline:maxWaitSeconds"]):
        found.append(f"max wait {environment.get(constants.ENV_MAX_WAIT_SECONDS)}")
    if _grace_seconds(synthesized) != [DEFAULT_READINESS_GRACE_SECONDS]:
        found.append(f"readiness grace {_grace_seconds(synthesized)}")
    if json.loads(environment.get(constants.ENV_AGENT_PRINCIPAL_ARNS, "[]")):
        found.append("agent principals")
    if constants.ENV_ALARM_TOPIC_ARN in environment or any(
        alarm["Properties"].get("AlarmActions") for alarm in synthesized.resources("AWS::CloudWatch::Alarm").values()
    ):
        found.append("alarm actions")
    return found


def test_the_default_template_is_cdk_json_as_it_is(default: Synthesized) -> None:
    assert DEFAULT_CONTEXT["lifeline:dependenciesLayer"] is True
    (layer,) = default.resources("AWS::Lambda::LayerVersion")
    functions = default.resources("AWS::Lambda::Function").values()
    assert functions and all(f["Properties"]["Layers"] == [{"Ref": layer}] for f in functions)


def test_the_default_template_has_none_of_the_labs_settings(default: Synthesized) -> None:
    assert _lab_settings_in(default) == []
    assert json.loads(_environment(default)[constants.ENV_ALLOWED_OUTPOST_ARNS]) == []


def test_the_labs_template_differs_only_through_its_context(lab_template: Synthesized) -> None:
    found = _lab_settings_in(lab_template)
    assert {LAB_AGENT, DEFAULT_OUTPOST_ARN, LAB_ALARM_TOPIC, "poll interval 1", "max wait 20", "readiness grace [0]",
            "agent principals", "alarm actions"} <= set(found), found  # fmt: skip
    assert not {"127.0.0.1", "localhost", constants.ENV_TOKEN_STS_ENDPOINT_URL, "AWS_ENDPOINT_URL",
                "AWS_ACCESS_KEY_ID", "moto"} & set(found)  # fmt: skip
