"""Readiness in the lab Region (issue 12): the workflow's per-cluster alarm, the real agent's CloudWatch metrics
through the service link, and the alarm evaluated over them the way CloudWatch would (lab/alarms.py).

The lab plays AWS's Outposts service: it emits ``AWS/Outposts`` ``ConnectedStatus`` for the Outpost, for the
periods the alarm looks at (some of them ahead of the clock: the evaluator is asked what CloudWatch would say
then, after the agent has stopped reporting).
"""

from __future__ import annotations

import datetime as dt
import functools
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from lab import agentkit
from lab.alarms import emit_connected_status, evaluate_all
from lab.deploy import DeployedStack, lab_deployment
from lab.lab import DEFAULT_OUTPOST_ARN
from lambdas import constants
from lambdas.watch_readiness.logic import EVALUATION_PERIODS, PERIOD_SECONDS, alarm_name
from tests.integration.test_workflow_execution import delivered_execution, finished, provision_request, put_event

pytestmark = pytest.mark.xdist_group("lifeline-workflow")

wait_for = functools.partial(agentkit.wait_for, interval=0.2)
OUTPOST_ID = DEFAULT_OUTPOST_ARN.rsplit("/", 1)[1]


@pytest.fixture(scope="module")
def deployed(lab: Any) -> DeployedStack:
    return lab_deployment(lab)


def provisioned(lab: Any, name: str) -> dict[str, Any]:
    """``name`` provisioned by the real workflow (provision request event): its execution's description."""
    put_event(lab, constants.EVENT_SOURCE, constants.PROVISION_REQUEST_DETAIL_TYPE, provision_request(name))
    arn = delivered_execution(lab, name)
    result = finished(lab, [arn])[arn]
    assert result["status"] == "SUCCEEDED", result.get("cause")
    return result


def datapoints(lab: Any, cluster: str, metric: str, start: float, end: float) -> list[dict[str, Any]]:
    answer = lab.client("cloudwatch").get_metric_statistics(
        Namespace="Lifeline", MetricName=metric, Dimensions=[{"Name": "ClusterName", "Value": cluster}],
        StartTime=dt.datetime.fromtimestamp(start, dt.UTC), EndTime=dt.datetime.fromtimestamp(end, dt.UTC),
        Period=60, Statistics=["Maximum", "Minimum", "SampleCount"],
    )  # fmt: skip
    return sorted(answer["Datapoints"], key=lambda point: point["Timestamp"])


def state(lab: Any, cluster: str, now: float) -> str:
    verdicts = evaluate_all(lab.client("cloudwatch"), now, prefix=alarm_name(cluster))
    (alarm,) = lab.client("cloudwatch").describe_alarms(AlarmNames=[alarm_name(cluster)])["MetricAlarms"]
    assert alarm["StateValue"] == verdicts[alarm_name(cluster)].state  # recorded in the Region
    return str(alarm["StateValue"])


def test_the_workflow_watches_the_cluster_and_the_alarm_follows_the_agent_and_the_outpost(
    lab: Any, deployed: DeployedStack, unique_name: str, tmp_path: Path
) -> None:
    result = provisioned(lab, unique_name)
    assert '"readinessAlarm":"' + alarm_name(unique_name) + '"' in result["output"].replace(" ", "")
    (alarm,) = lab.client("cloudwatch").describe_alarms(AlarmNames=[alarm_name(unique_name)])["MetricAlarms"]
    stats = {m["Id"]: m["MetricStat"] for m in alarm["Metrics"] if "MetricStat" in m}
    assert stats["ready"]["Metric"]["Dimensions"] == [{"Name": "ClusterName", "Value": unique_name}]
    assert stats["connected"]["Metric"]["Dimensions"] == [{"Name": "OutpostId", "Value": OUTPOST_ID}]

    # the real agent, through the service link: one pass, then its report
    config = agentkit.write_config(lab, tmp_path, [unique_name])
    before = time.time()
    ran = agentkit.run_once(lab, config, timeout=120)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    reported = time.time()
    (ready,) = datapoints(lab, unique_name, "OfflineAccessReady", before - 60, reported + 60)
    assert ready["Maximum"] == ready["Minimum"] == 1.0 and ready["SampleCount"] == 1.0
    (left,) = datapoints(lab, unique_name, "OfflineAccessSecondsLeft", before - 60, reported + 60)
    status = agentkit.read_status(tmp_path / "state", unique_name)
    assert abs(left["Maximum"] - (status["certificate_not_after"] - reported)) < reported - before + 2

    period = int(reported) // PERIOD_SECONDS * PERIOD_SECONDS  # the period of the report
    span = EVALUATION_PERIODS * PERIOD_SECONDS
    cloudwatch = lab.client("cloudwatch")
    emit_connected_status(cloudwatch, OUTPOST_ID, True, period - span, period + PERIOD_SECONDS + span)
    emit_connected_status(cloudwatch, OUTPOST_ID, False, period + PERIOD_SECONDS + span,
                          period + PERIOD_SECONDS + 2 * span)  # fmt: skip
    # the report's period is the newest complete one: an agent is ready
    assert state(lab, unique_name, period + PERIOD_SECONDS + 1) == "OK"
    # three periods on, the agent has sent nothing since (it was a single pass: as good as stopped)
    assert state(lab, unique_name, period + PERIOD_SECONDS + span + 1) == "ALARM"
    # the Outpost disconnected: no agent can report, and that is no "offline access missing"
    assert state(lab, unique_name, period + PERIOD_SECONDS + 2 * span + 1) == "OK"


def test_a_cluster_whose_agent_cannot_get_access_reports_not_ready_and_alarms_while_connected(
    lab: Any, deployed: DeployedStack, unique_name: str, tmp_path: Path
) -> None:
    from lifeline_agent import rbac

    provisioned(lab, unique_name)
    with lab.kube_session(unique_name) as session:  # offline access revoked before this agent's first pass
        assert rbac.delete_object(session, "ClusterRoleBinding", rbac.BREAKGLASS_BINDING)
    config = agentkit.write_config(lab, tmp_path, [unique_name])
    before = time.time()
    ran = agentkit.run_once(lab, config, timeout=120)
    assert ran.returncode != 0, ran.stdout + ran.stderr
    reported = time.time()
    (ready,) = datapoints(lab, unique_name, "OfflineAccessReady", before - 60, reported + 60)
    assert ready["Maximum"] == 0.0  # the agent runs and reports, but holds no verified kubeconfig
    period = int(reported) // PERIOD_SECONDS * PERIOD_SECONDS
    span = EVALUATION_PERIODS * PERIOD_SECONDS
    emit_connected_status(lab.client("cloudwatch"), OUTPOST_ID, True, period - span, period + PERIOD_SECONDS)
    assert state(lab, unique_name, period + PERIOD_SECONDS + 1) == "ALARM"


def test_the_service_reports_while_the_link_is_up_and_stops_quietly_while_it_is_down(
    lab: Any, unique_name: str, tmp_path: Path, link_restored: Any
) -> None:
    lab.create_local_cluster(unique_name)
    lab.seed_cluster_for_agent(unique_name)
    config = agentkit.write_config(lab, tmp_path, [unique_name], readiness_interval="10s", probe_interval="2s")
    agent = agentkit.AgentProcess(lab, config, tmp_path / "agent.log")
    try:
        started = time.time()
        wait_for(lambda: datapoints(lab, unique_name, "OfflineAccessReady", started - 60, time.time() + 60), 60,
                 "a first readiness report")  # fmt: skip
        address = next(r["address"] for r in agent.records() if r.get("message") == "serving /healthz and /metrics")
        link_restored.cut()
        time.sleep(25)  # more than two report intervals
        during = reports(address)
        assert during.get("failure", 0) <= 1, during  # only a report the cut caught on its way
        assert agentkit.read_status(tmp_path / "state", unique_name)["state"] == "ready"  # renewal untouched
        time.sleep(12)
        assert reports(address) == during  # nothing tried at all while the agent knows the link is down
        link_restored.restore()
        restored_at = time.time()
        wait_for(lambda: datapoints(lab, unique_name, "OfflineAccessReady", restored_at, time.time() + 60), 60,
                 "a report after the link came back")  # fmt: skip
        assert reports(address)["success"] > during["success"]
    finally:
        agent.stop()
    warnings = [r for r in agent.records() if "cannot report readiness" in r.get("message", "")]
    assert len(warnings) <= 1, warnings  # never one per interval


def reports(address: str) -> dict[str, float]:
    """``lifeline_readiness_reports_total`` by result, from the agent's own /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"{address}/metrics", timeout=5) as response:  # noqa: S310 - loopback
        families = text_string_to_metric_families(response.read().decode())
    return {s.labels["result"]: s.value for f in families if f.name == "lifeline_readiness_reports"
            for s in f.samples if s.name.endswith("_total")}  # fmt: skip
