"""WatchReadiness: one CloudWatch alarm per provisioned cluster, ``lifeline-readiness-<cluster>``.

The alarm fires when no agent reports a verified, unexpired offline kubeconfig for the cluster (the
``Lifeline`` ``OfflineAccessReady`` metric, Maximum over the agents) while the cluster's Outpost is connected
(``AWS/Outposts`` ``ConnectedStatus``, Minimum: connected for the whole period). Missing readiness data is a
missing agent (``FILL(ready, 0)``: a stopped agent sends nothing); missing connectivity data is not
"connected" (``FILL(connected, 0)``), so an outage, when agents cannot report, never pages as missing offline
access. The expression has a value for every period, so TreatMissingData only matters if both series vanish.
"""

from __future__ import annotations

from typing import Any

import botocore.exceptions
from lifeline_agent.contract import CLUSTER_DIMENSION, READINESS_ALARM_PREFIX, READINESS_NAMESPACE, READY_METRIC

from lambdas.aws import raise_transient
from lambdas.errors import ReadinessAlarmFailed
from lambdas.models import ClusterView

PERIOD_SECONDS = 300
EVALUATION_PERIODS = 3  # 15 minutes without a ready agent while connected
OUTPOSTS_NAMESPACE = "AWS/Outposts"
CONNECTED_METRIC = "ConnectedStatus"
EXPRESSION = "IF(FILL(connected, 0) >= 1 AND FILL(ready, 0) < 1, 1, 0)"


def alarm_name(cluster_name: str) -> str:
    return f"{READINESS_ALARM_PREFIX}{cluster_name}"


def outpost_id(outpost_arn: str) -> str:
    """``op-…`` of ``arn:aws:outposts:<region>:<account>:outpost/op-…`` (the ARN pattern was checked before)."""
    return outpost_arn.rsplit("/", 1)[-1]


def alarm_definition(cluster: ClusterView, *, topic_arn: str | None) -> dict[str, Any]:
    """``PutMetricAlarm``'s parameters for ``cluster`` (its first, for a local cluster only, Outpost)."""
    if not cluster.outpostArns:
        raise ReadinessAlarmFailed(f"cluster {cluster.name} has no Outpost: nothing to watch its readiness against")
    outpost = outpost_id(cluster.outpostArns[0])
    actions = [topic_arn] if topic_arn else []
    return {
        "AlarmName": alarm_name(cluster.name),
        "AlarmDescription": f"No Lifeline agent holds a verified, unexpired offline kubeconfig for cluster "
        f"{cluster.name} while its Outpost {outpost} is connected: an outage now would leave it without offline "
        "access. Check the agents (lifeline-agent status) on the Outpost; see docs/cloud.md.",
        "ActionsEnabled": True,
        "AlarmActions": actions,  # like the stack's own alarms: no OK action (a new cluster's alarm goes OK)
        "Metrics": [
            {"Id": "ready", "ReturnData": False, "Label": "Agents ready (max)",
             "MetricStat": {"Metric": {"Namespace": READINESS_NAMESPACE, "MetricName": READY_METRIC,
                                       "Dimensions": [{"Name": CLUSTER_DIMENSION, "Value": cluster.name}]},
                            "Period": PERIOD_SECONDS, "Stat": "Maximum"}},
            {"Id": "connected", "ReturnData": False, "Label": "Outpost connected (min)",
             "MetricStat": {"Metric": {"Namespace": OUTPOSTS_NAMESPACE, "MetricName": CONNECTED_METRIC,
                                       "Dimensions": [{"Name": "OutpostId", "Value": outpost}]},
                            "Period": PERIOD_SECONDS, "Stat": "Minimum"}},
            {"Id": "missing", "ReturnData": True, "Expression": EXPRESSION,
             "Label": "No ready agent while the Outpost is connected"},
        ],
        "EvaluationPeriods": EVALUATION_PERIODS,
        "DatapointsToAlarm": EVALUATION_PERIODS,
        "Threshold": 1.0,
        "ComparisonOperator": "GreaterThanOrEqualToThreshold",
        "TreatMissingData": "notBreaching",
    }  # fmt: skip


def put_alarm(cloudwatch: Any, cluster: ClusterView, *, topic_arn: str | None) -> dict[str, str]:
    """Create or update the cluster's alarm (idempotent: a re-run writes the same definition)."""
    definition = alarm_definition(cluster, topic_arn=topic_arn)
    try:
        cloudwatch.put_metric_alarm(**definition)
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
        raise_transient(exc, "cloudwatch:PutMetricAlarm")
        raise ReadinessAlarmFailed(f"cloudwatch:PutMetricAlarm {definition['AlarmName']}: {exc}") from None
    outpost = definition["Metrics"][1]["MetricStat"]["Metric"]["Dimensions"][0]["Value"]
    return {"alarmName": definition["AlarmName"], "outpostId": outpost}
