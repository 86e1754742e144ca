"""WatchReadiness's alarm definition and its errors (pure logic; the lab test runs it in the workflow against
moto and evaluates the alarm it makes)."""

from __future__ import annotations

from typing import Any

import botocore.exceptions
import pytest

from lambdas.errors import ReadinessAlarmFailed, TransientAwsError
from lambdas.models import ClusterView
from lambdas.watch_readiness.logic import EXPRESSION, alarm_definition, put_alarm

OUTPOST = "arn:aws:outposts:us-west-2:123456789012:outpost/op-0abcdef1234567890"
TOPIC = "arn:aws:sns:us-west-2:123456789012:ops-alarms"


def cluster(**changes: Any) -> ClusterView:
    fields: dict[str, Any] = {"name": "edge-1", "arn": "arn:aws:eks:us-west-2:123456789012:cluster/edge-1",
                              "status": "ACTIVE", "endpoint": "https://10.0.0.1", "certificateAuthorityData": "x",
                              "version": "1.31", "platformVersion": "eks-local-outposts.1",
                              "outpostArns": [OUTPOST], **changes}  # fmt: skip
    return ClusterView(**fields)


def test_the_alarm_combines_the_clusters_readiness_with_its_outposts_connectivity() -> None:
    definition = alarm_definition(cluster(), topic_arn=TOPIC)
    assert definition["AlarmName"] == "lifeline-readiness-edge-1"
    assert definition["AlarmActions"] == [TOPIC] and "OKActions" not in definition
    ready, connected, missing = definition["Metrics"]
    assert ready["MetricStat"] == {"Metric": {"Namespace": "Lifeline", "MetricName": "OfflineAccessReady",
                                              "Dimensions": [{"Name": "ClusterName", "Value": "edge-1"}]},
                                   "Period": 300, "Stat": "Maximum"}  # fmt: skip
    outpost = [{"Name": "OutpostId", "Value": "op-0abcdef1234567890"}]
    assert connected["MetricStat"] == {"Metric": {"Namespace": "AWS/Outposts", "MetricName": "ConnectedStatus",
                                                  "Dimensions": outpost}, "Period": 300, "Stat": "Minimum"}  # fmt: skip
    assert missing == {"Id": "missing", "ReturnData": True, "Expression": EXPRESSION,
                       "Label": "No ready agent while the Outpost is connected"}  # fmt: skip
    assert not ready["ReturnData"] and not connected["ReturnData"]
    assert (definition["EvaluationPeriods"], definition["DatapointsToAlarm"], definition["Threshold"]) == (3, 3, 1.0)
    assert definition["TreatMissingData"] == "notBreaching" and "edge-1" in definition["AlarmDescription"]
    assert alarm_definition(cluster(), topic_arn=None)["AlarmActions"] == []


def test_a_cluster_without_an_outpost_gets_no_alarm() -> None:
    with pytest.raises(ReadinessAlarmFailed, match="has no Outpost"):
        alarm_definition(cluster(outpostArns=[]), topic_arn=None)


class CloudWatch:
    """PutMetricAlarm answering with ``error`` (a recording stand-in for the API)."""

    def __init__(self, error: str | None = None, status: int = 400) -> None:
        self.error, self.status, self.calls = error, status, []  # type: ignore[var-annotated]

    def put_metric_alarm(self, **definition: Any) -> None:
        self.calls.append(definition)
        if self.error:
            raise botocore.exceptions.ClientError({"Error": {"Code": self.error, "Message": "no"},
                                                   "ResponseMetadata": {"HTTPStatusCode": self.status}},
                                                  "PutMetricAlarm")  # fmt: skip


def test_put_alarm_names_what_it_did_and_sorts_errors_into_retried_and_final() -> None:
    ok = CloudWatch()
    assert put_alarm(ok, cluster(), topic_arn=None) == {"alarmName": "lifeline-readiness-edge-1",
                                                       "outpostId": "op-0abcdef1234567890"}  # fmt: skip
    assert ok.calls == [alarm_definition(cluster(), topic_arn=None)]
    with pytest.raises(TransientAwsError):
        put_alarm(CloudWatch("Throttling"), cluster(), topic_arn=None)
    with pytest.raises(ReadinessAlarmFailed, match="LimitExceeded"):
        put_alarm(CloudWatch("LimitExceeded"), cluster(), topic_arn=None)
    with pytest.raises(ReadinessAlarmFailed, match="AccessDenied"):
        put_alarm(CloudWatch("AccessDenied", 403), cluster(), topic_arn=None)
