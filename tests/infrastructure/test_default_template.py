"""Nothing of the lab leaks into what a user deploys: the template synthesized with the default cdk.json has
none of the lab's settings, which reach the lab's stack only as ``--context`` (lab.deploy.lab_context) or
through the lab's own Lambda runtime (lab/region/lambda_sandbox.py). The same checks on the lab's template
show they can fail."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from cdk.settings import DEFAULT_READINESS_GRACE_SECONDS
from lab.deploy import lab_context
from lambdas.constants import ENV_TOKEN_STS_ENDPOINT_URL
from tests.infrastructure.conftest import Synthesized, _synthesize

DEFAULT_CONTEXT = json.loads((Path(__file__).resolve().parents[2] / "cdk.json").read_text())["context"]
LAB_AGENT = "arn:aws:iam::123456789012:user/lifeline-agent"
LAB_MARKERS = ("127.0.0.1", "localhost", LAB_AGENT, "lab-", ENV_TOKEN_STS_ENDPOINT_URL, "AWS_ENDPOINT_URL", "moto")


@pytest.fixture(scope="module")
def default() -> Synthesized:
    return _synthesize({**DEFAULT_CONTEXT, "lifeline:dependenciesLayer": False})


@pytest.fixture(scope="module")
def lab_template() -> Synthesized:
    lab = SimpleNamespace(agent_principal=SimpleNamespace(arn=LAB_AGENT))
    allowed = ["arn:aws:outposts:us-west-2:123456789012:outpost/op-0abcdef1234567890"]
    return _synthesize({**DEFAULT_CONTEXT, **lab_context(lab, allowed), "lifeline:dependenciesLayer": False})


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
    found = [marker for marker in LAB_MARKERS if marker in json.dumps(synthesized.json)]
    environment = _environment(synthesized)
    if environment.get("LIFELINE_POLL_INTERVAL_SECONDS") != str(DEFAULT_CONTEXT["lifeline:pollIntervalSeconds"]):
        found.append(f"poll interval {environment.get('LIFELINE_POLL_INTERVAL_SECONDS')}")
    if environment.get("LIFELINE_MAX_WAIT_SECONDS") != str(DEFAULT_CONTEXT["lifeline:maxWaitSeconds"]):
        found.append(f"max wait {environment.get('LIFELINE_MAX_WAIT_SECONDS')}")
    if _grace_seconds(synthesized) != [DEFAULT_READINESS_GRACE_SECONDS]:
        found.append(f"readiness grace {_grace_seconds(synthesized)}")
    return found


def test_the_default_template_has_none_of_the_labs_settings(default: Synthesized) -> None:
    assert _lab_settings_in(default) == []
    assert json.loads(_environment(default)["LIFELINE_ALLOWED_OUTPOST_ARNS"]) == []


def test_the_labs_template_differs_only_through_its_context(lab_template: Synthesized) -> None:
    found = _lab_settings_in(lab_template)
    assert LAB_AGENT in found and "poll interval 1" in found and "readiness grace [0]" in found
    assert not {"127.0.0.1", "localhost", ENV_TOKEN_STS_ENDPOINT_URL, "AWS_ENDPOINT_URL", "moto"} & set(found)
