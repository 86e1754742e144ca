"""CDK assertion tests of readiness in the Region: the dashboard, the per-cluster alarm's step and IAM, and the
grace period before it (issue 12)."""

from __future__ import annotations

import json
from typing import Any

from lambdas import constants
from tests.infrastructure.conftest import Synthesized
from tests.infrastructure.test_stack_template import _as_list, _function_env, _role_statements


def _definition(synth: Synthesized) -> dict[str, Any]:
    (machine,) = synth.resources("AWS::StepFunctions::StateMachine").values()
    parts = machine["Properties"]["DefinitionString"]["Fn::Join"][1]
    return dict(json.loads("".join(p if isinstance(p, str) else "x" for p in parts)))


def _dashboard_body(synth: Synthesized) -> dict[str, Any]:
    (dashboard,) = synth.resources("AWS::CloudWatch::Dashboard").values()
    body = dashboard["Properties"]["DashboardBody"]
    text = body if isinstance(body, str) else "".join(p if isinstance(p, str) else "x" for p in body["Fn::Join"][1])
    return dict(json.loads(text))


def test_the_dashboard_shows_every_reporting_cluster_and_the_outposts_connectivity(synthesized: Synthesized) -> None:
    (dashboard,) = synthesized.resources("AWS::CloudWatch::Dashboard").values()
    assert dashboard["Properties"]["DashboardName"] == "Lifeline-readiness"
    widgets = _dashboard_body(synthesized)["widgets"]
    expressions = [m[0]["expression"] for w in widgets for m in w.get("properties", {}).get("metrics", [])
                   if isinstance(m, list) and isinstance(m[0], dict) and "expression" in m[0]]  # fmt: skip
    assert "SEARCH('{Lifeline,ClusterName} MetricName=\"OfflineAccessReady\"', 'Maximum', 300)" in expressions
    assert "SEARCH('{Lifeline,ClusterName} MetricName=\"OfflineAccessSecondsLeft\"', 'Maximum', 300) / 3600" \
        in expressions  # fmt: skip
    assert "SEARCH('{AWS/Outposts,OutpostId} MetricName=\"ConnectedStatus\"', 'Minimum', 300)" in expressions
    statuses = [w for w in widgets if w["type"] == "alarm"]
    assert len(statuses) == 1 and len(statuses[0]["properties"]["alarms"]) == 2  # the workflow's own alarms


def test_the_readiness_alarm_is_set_after_the_grace_period_as_the_last_step(synthesized: Synthesized) -> None:
    states = _definition(synthesized)["States"]
    assert states["PublishReady"]["Next"] == "WaitForAgents"
    assert states["WaitForAgents"] == {"Type": "Wait", "Seconds": 1800, "Next": "WatchReadiness",
                                       "Comment": states["WaitForAgents"]["Comment"]}  # fmt: skip
    watch = states["WatchReadiness"]
    assert watch["Next"] == "Ready"
    assert watch["Parameters"] == {"cluster.$": "$.check.cluster"}
    assert watch["Catch"][0]["Next"] == "PublishFailure"  # nothing after it to roll back; the failure is published
    assert any("TransientAwsError" in r["ErrorEquals"] for r in watch["Retry"])
    assert states["Ready"]["Parameters"]["readinessAlarm.$"] == "$.readiness.alarmName"
    # the execution's hard stop leaves room for the grace period on top of the longest cluster wait
    assert _definition(synthesized)["TimeoutSeconds"] >= 24 * 3600 + 1800


def test_the_grace_period_comes_from_the_context(synthesized_full: Synthesized) -> None:
    from tests.infrastructure.conftest import FULL_CONTEXT, _synthesize

    synth = _synthesize({**FULL_CONTEXT, "lifeline:stackName": "LifelineGrace", "lifeline:readinessGraceSeconds": 0})
    assert _definition(synth)["States"]["WaitForAgents"]["Seconds"] == 0
    full_watch = _function_env(synthesized_full, "lambdas.watch_readiness.handler.handler")
    assert full_watch[constants.ENV_ALARM_TOPIC_ARN] == "arn:aws:sns:us-west-2:123456789012:ops-alarms"


def test_the_alarm_step_may_write_only_lifeline_readiness_alarms(synthesized: Synthesized) -> None:
    statements = [s for s in _role_statements(synthesized, "WatchReadinessRole")
                  if "cloudwatch:PutMetricAlarm" in _as_list(s["Action"])]  # fmt: skip
    (statement,) = statements
    assert _as_list(statement["Action"]) == ["cloudwatch:PutMetricAlarm"]
    resource = json.dumps(statement["Resource"])
    assert ":cloudwatch:" in resource and ":alarm:lifeline-readiness-*" in resource
    assert constants.ENV_ALARM_TOPIC_ARN not in _function_env(synthesized, "lambdas.watch_readiness.handler.handler")
