"""Readiness in the lab Region (issue 12): the workflow's per-cluster alarm over the real agent's CloudWatch metrics
(sent through the service link) and the Outpost's ``ConnectedStatus`` (the lab's Outposts service, from the
link's real state), evaluated from the alarm's own definition the way CloudWatch would (lab/alarms.py).

No test writes a metric: the agent reports, the link's cuts and restores make ConnectedStatus. Time passes without
waiting: the alarm is evaluated at a chosen time ahead, when the periods it looks at are complete (a stopped agent
sends nothing more; ConnectedStatus reaches an hour ahead with the link as it is).
"""

from __future__ import annotations

import datetime as dt
import functools
import time
from pathlib import Path
from typing import Any

import pytest

from lab import agentkit
from lab.alarms import Verdict, evaluate_all
from lab.deploy import DeployedStack, lab_deployment
from lab.drill import seconds_until_fresh_tokens
from lab.lab import DEFAULT_OUTPOST_ARN
from lambdas import constants
from lambdas.watch_readiness.logic import EVALUATION_PERIODS, PERIOD_SECONDS, alarm_name, outpost_id
from tests.conftest import both_backends, lab_of_backend
from tests.integration.test_agent_lab import install_expired_certificate
from tests.integration.test_workflow_execution import delivered_execution, finished, provision_request, put_event

pytestmark = pytest.mark.xdist_group("lifeline-workflow")
lab = pytest.fixture(name="lab")(lab_of_backend)

wait_for = functools.partial(agentkit.wait_for, interval=0.2)
OUTPOST_ID = outpost_id(DEFAULT_OUTPOST_ARN)
SPAN = EVALUATION_PERIODS * PERIOD_SECONDS


@pytest.fixture
def deployed(lab: Any) -> DeployedStack:
    return lab_deployment(lab)


def provisioned(lab: Any, name: str) -> dict[str, Any]:
    """``name`` provisioned by the real workflow (provision request event): its execution's description."""
    put_event(lab, constants.EVENT_SOURCE, constants.PROVISION_REQUEST_DETAIL_TYPE, provision_request(name))
    arn = delivered_execution(lab, name)
    result = finished(lab, [arn])[arn]
    assert result["status"] == "SUCCEEDED", result.get("cause")
    return result


def statistics(lab: Any, namespace: str, metric: str, dimension: dict[str, str], start: float, end: float,
               period: int = 60) -> list[dict[str, Any]]:  # fmt: skip
    answer = lab.client("cloudwatch").get_metric_statistics(
        Namespace=namespace, MetricName=metric, Dimensions=[dimension], Period=period,
        StartTime=dt.datetime.fromtimestamp(start, dt.UTC), EndTime=dt.datetime.fromtimestamp(end, dt.UTC),
        Statistics=["Maximum", "Minimum", "SampleCount"],
    )  # fmt: skip
    return sorted(answer["Datapoints"], key=lambda point: point["Timestamp"])


def reported(lab: Any, cluster: str, metric: str, start: float, end: float | None = None,
             period: int = 60) -> list[dict[str, Any]]:  # fmt: skip
    """The agents' ``metric`` for ``cluster`` in the Region, reported in [start, end)."""
    return statistics(lab, "Lifeline", metric, {"Name": "ClusterName", "Value": cluster}, start,
                      end if end is not None else time.time() + 60, period)  # fmt: skip


def period_of(moment: float) -> int:
    return int(moment) // PERIOD_SECONDS * PERIOD_SECONDS


def undisturbed_period(lab: Any, moment: float) -> int:
    """The first period from ``moment``'s in which the service link was neither cut nor restored. A cut, by this
    test or an earlier one of this process, leaves its period "not connected throughout", where the alarm does
    not fire whatever the agents say (an outage is no missing access)."""
    changes = [at for at, _ in lab.link.history()[1:]]
    period = period_of(moment)
    while any(period <= at < period + PERIOD_SECONDS for at in changes):
        period += PERIOD_SECONDS
    return period


def evaluated(lab: Any, cluster: str, first_period: int) -> Verdict:
    """The cluster's alarm as CloudWatch evaluates it once the ``EVALUATION_PERIODS`` periods from ``first_period``
    are complete; the state is recorded in the Region."""
    at = first_period + SPAN + 1
    assert at <= lab.outposts.horizon, "ConnectedStatus does not reach that far ahead: the verdict would be a guess"
    verdict = evaluate_all(lab.client("cloudwatch"), at, prefix=alarm_name(cluster))[alarm_name(cluster)]
    assert verdict.periods[0] == first_period
    (alarm,) = lab.client("cloudwatch").describe_alarms(AlarmNames=[alarm_name(cluster)])["MetricAlarms"]
    assert alarm["StateValue"] == verdict.state
    return verdict


def agent_until_reported(lab: Any, directory: Path, cluster: str, **settings: Any) -> tuple[float, float]:
    """``lifeline-agent run`` (readiness every 10 s) until its first report is in the Region, then stopped
    (SIGTERM, as systemd stops it): (time of that report, time the agent had stopped)."""
    config = agentkit.write_config(lab, directory, [cluster], readiness_interval="10s", **settings)
    agent = agentkit.AgentProcess(lab, config, directory / "agent.log")
    try:
        first = wait_for(lambda: reported(lab, cluster, "OfflineAccessReady", agent.started_at - 60), 90,
                         "the agent's first readiness report in the Region")  # fmt: skip
    finally:
        assert agent.stop() == 0, agent.log_path.read_text()[-3000:]
    return first[0]["Timestamp"].timestamp(), time.time()


@both_backends
def test_a_ready_agent_keeps_the_alarm_ok_and_once_stopped_drives_it_to_alarm_while_the_outpost_is_connected(
    lab: Any, deployed: DeployedStack, unique_name: str, tmp_path: Path
) -> None:
    result = provisioned(lab, unique_name)
    assert '"readinessAlarm":"' + alarm_name(unique_name) + '"' in result["output"].replace(" ", "")
    (alarm,) = lab.client("cloudwatch").describe_alarms(AlarmNames=[alarm_name(unique_name)])["MetricAlarms"]
    stats = {m["Id"]: m["MetricStat"] for m in alarm["Metrics"] if "MetricStat" in m}
    assert stats["ready"]["Metric"]["Dimensions"] == [{"Name": "ClusterName", "Value": unique_name}]
    assert stats["connected"]["Metric"]["Dimensions"] == [{"Name": "OutpostId", "Value": OUTPOST_ID}]

    started = time.time()
    first_report, stopped = agent_until_reported(lab, tmp_path, unique_name)
    (ready,) = reported(lab, unique_name, "OfflineAccessReady", started - 60, stopped + 1, period=3600)
    assert ready["Maximum"] == ready["Minimum"] == 1.0  # every report of the run said ready
    (left,) = reported(lab, unique_name, "OfflineAccessSecondsLeft", started - 60, stopped + 1, period=3600)
    not_after = agentkit.read_status(tmp_path / "state", unique_name)["certificate_not_after"]
    assert not_after - stopped - 1 <= left["Minimum"] <= left["Maximum"] <= not_after - started + 1

    running = evaluated(lab, unique_name, period_of(first_report) - SPAN + PERIOD_SECONDS)
    assert running.state == "OK" and running.values[-1] == 0.0, running  # the report's period: an agent is ready
    stopped_verdict = evaluated(lab, unique_name, period_of(stopped) + PERIOD_SECONDS)
    assert stopped_verdict.state == "ALARM" and stopped_verdict.values == (1.0, 1.0, 1.0), stopped_verdict


@both_backends
def test_with_the_link_cut_a_stopped_agent_does_not_page_and_once_the_link_is_back_it_does(
    lab: Any, deployed: DeployedStack, unique_name: str, tmp_path: Path, link_restored: Any
) -> None:
    provisioned(lab, unique_name)
    _, stopped = agent_until_reported(lab, tmp_path, unique_name)
    link_restored.cut()
    cut = time.time()

    outage = evaluated(lab, unique_name, period_of(stopped) + PERIOD_SECONDS)
    assert outage.state == "OK" and outage.values == (0.0, 0.0, 0.0), outage  # an outage is no missing access
    # what the Region sees of the Outpost, minute by minute: connected until the cut, then not
    cut_minute = int(cut // 60 * 60)  # periods start on the minute, as CloudWatch's do
    minutes = statistics(lab, "AWS/Outposts", "ConnectedStatus", {"Name": "OutpostId", "Value": OUTPOST_ID},
                         cut_minute - 180, cut_minute + 180)  # fmt: skip
    values = {point["Timestamp"].timestamp(): point["Minimum"] for point in minutes}
    assert values.get(cut_minute + 60) == 0.0, (cut, values)  # (a lab started in the cut's minute has no point for it)
    assert all(value == 0.0 for minute, value in values.items() if minute + 60 > cut), (cut, values)
    # before the cut: connected in every whole minute since the link last came up (an earlier test may cut it)
    up_since = max(at for at, up in lab.link.history() if up and at < cut)
    whole = [minute for minute in values if up_since <= minute and minute + 60 <= cut]
    assert all(values[minute] == 1.0 for minute in whole), values
    assert whole or cut - up_since < 120, (up_since, cut, values)  # the agent's run alone spans a minute

    link_restored.restore()
    back = evaluated(lab, unique_name, period_of(time.time()) + PERIOD_SECONDS)
    assert back.state == "ALARM" and back.values == (1.0, 1.0, 1.0), back  # connected again, no agent ready


@both_backends
def test_an_agent_whose_kubeconfig_expired_and_cannot_be_renewed_reports_not_ready_and_the_alarm_fires(
    lab: Any, deployed: DeployedStack, unique_name: str, tmp_path: Path
) -> None:
    from lifeline_agent import rbac

    provisioned(lab, unique_name)
    host = "back-after-months"
    quiet = agentkit.write_config(lab, tmp_path, [unique_name], host_id=host, readiness_metrics=False)
    first = agentkit.run_once(lab, quiet, timeout=120)
    bootstrapped = time.time()
    assert first.returncode == 0, first.stdout + first.stderr  # a verified kubeconfig, not reported
    kubeconfig = tmp_path / "state" / unique_name / "kubeconfig"
    install_expired_certificate(lab, unique_name, kubeconfig, f"lifeline:{host}")  # the host was off for longer
    with lab.kube_session(unique_name) as session:  # and meanwhile someone dropped the agents from aws-auth
        assert rbac.delete_object(session, rbac.AWS_AUTH_KIND, rbac.AWS_AUTH[1])
    # kube-apiserver lets a token it accepted in the last 10 s in again: the agent's next one, signed to the
    # second, must not be the first run's
    time.sleep(seconds_until_fresh_tokens(bootstrapped, time.time()))

    report, _ = agent_until_reported(lab, tmp_path, unique_name, host_id=host)
    (ready,) = reported(lab, unique_name, "OfflineAccessReady", report - 1, report + 1)
    (left,) = reported(lab, unique_name, "OfflineAccessSecondsLeft", report - 1, report + 1)
    assert ready["Maximum"] == 0.0 and left["Maximum"] == 0.0  # running and reporting, but nothing usable
    assert agentkit.read_status(tmp_path / "state", unique_name)["state"] != "ready"

    verdict = evaluated(lab, unique_name, undisturbed_period(lab, report))
    assert verdict.state == "ALARM" and verdict.values == (1.0, 1.0, 1.0), verdict


@both_backends
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
    (ready,) = reported(lab, unique_name, "OfflineAccessReady", before - 60)
    assert ready["Maximum"] == 0.0  # the agent runs and reports, but holds no verified kubeconfig
    verdict = evaluated(lab, unique_name, undisturbed_period(lab, ready["Timestamp"].timestamp()))
    assert verdict.state == "ALARM" and verdict.values == (1.0, 1.0, 1.0), verdict


def test_the_service_reports_while_the_link_is_up_and_stops_quietly_while_it_is_down(
    lab: Any, unique_name: str, tmp_path: Path, link_restored: Any
) -> None:
    lab.create_local_cluster(unique_name)
    lab.seed_cluster_for_agent(unique_name)
    config = agentkit.write_config(lab, tmp_path, [unique_name], readiness_interval="10s", probe_interval="2s")
    agent = agentkit.AgentProcess(lab, config, tmp_path / "agent.log")
    try:
        started = time.time()
        wait_for(lambda: reported(lab, unique_name, "OfflineAccessReady", started - 60), 60, "a first readiness report")
        address = agent.metrics_address()
        link_restored.cut()
        time.sleep(25)  # more than two report intervals
        during = reports(address)
        assert during.get("failure", 0) <= 1, during  # only a report the cut caught on its way
        assert agentkit.read_status(tmp_path / "state", unique_name)["state"] == "ready"  # renewal untouched
        time.sleep(12)
        assert reports(address) == during  # nothing tried at all while the agent knows the link is down
        link_restored.restore()
        restored_at = time.time()
        wait_for(lambda: reported(lab, unique_name, "OfflineAccessReady", restored_at), 60,
                 "a report after the link came back")  # fmt: skip
        assert reports(address)["success"] > during["success"]
    finally:
        agent.stop()
    warnings = [r for r in agent.records() if "cannot report readiness" in r.get("message", "")]
    assert len(warnings) <= 1, warnings  # never one per interval


def reports(address: str) -> dict[str, float]:
    """``lifeline_readiness_reports_total`` by result, from the agent's own /metrics."""
    return agentkit.metric_counts(address, "lifeline_readiness_reports")
