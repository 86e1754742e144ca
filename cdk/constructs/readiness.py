"""Readiness in the Region: a dashboard of every cluster's offline access as the agents report it.

The stack is made before its clusters, so the graphs use SEARCH expressions: a new cluster appears as soon
as an agent reports for it. The alarm per cluster is the workflow's (lambdas/watch_readiness), made when the
cluster is provisioned; this dashboard shows the stack's own workflow alarms beside the graphs.
"""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from constructs import Construct
from lifeline_agent.contract import CLUSTER_DIMENSION, READINESS_NAMESPACE, READY_METRIC, SECONDS_LEFT_METRIC

PERIOD = Duration.minutes(5)
_SECONDS = int(PERIOD.to_seconds())


def _search(namespace: str, dimension: str, metric: str, statistic: str) -> str:
    return f"SEARCH('{{{namespace},{dimension}}} MetricName=\"{metric}\"', '{statistic}', {_SECONDS})"


class ReadinessDashboard(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, workflow_alarms: list[cloudwatch.IAlarm]) -> None:
        super().__init__(scope, construct_id)
        ready = cloudwatch.MathExpression(
            expression=_search(READINESS_NAMESPACE, CLUSTER_DIMENSION, READY_METRIC, "Maximum"),
            using_metrics={}, label="", period=PERIOD,
        )
        hours_left = cloudwatch.MathExpression(
            expression=_search(READINESS_NAMESPACE, CLUSTER_DIMENSION, SECONDS_LEFT_METRIC, "Maximum") + " / 3600",
            using_metrics={}, label="", period=PERIOD,
        )
        connected = cloudwatch.MathExpression(
            expression=_search("AWS/Outposts", "OutpostId", "ConnectedStatus", "Minimum"),
            using_metrics={}, label="", period=PERIOD,
        )
        self.dashboard = cloudwatch.Dashboard(
            self,
            "Dashboard",
            dashboard_name=f"{Stack.of(self).stack_name}-readiness",
            default_interval=Duration.days(1),
            widgets=[
                [cloudwatch.TextWidget(
                    markdown="## Lifeline: offline access per cluster\n"
                    "Each agent reports while its service link is up (nothing while it is down). "
                    "**Ready** is 1 when some agent holds a verified, unexpired offline kubeconfig for the cluster. "
                    "Each provisioned cluster has an alarm `lifeline-readiness-<cluster>`: no ready agent for 15 "
                    "minutes while its Outpost is connected. See docs/cloud.md.",
                    width=24, height=3,
                )],
                [
                    cloudwatch.SingleValueWidget(title="Ready now, per cluster", metrics=[ready], width=24,
                                                 height=4),
                ],
                [
                    cloudwatch.GraphWidget(title="Offline access ready (1) per cluster", left=[ready],
                                           left_y_axis=cloudwatch.YAxisProps(min=0, max=1), width=12),
                    cloudwatch.GraphWidget(title="Hours of offline access left per cluster", left=[hours_left],
                                           left_y_axis=cloudwatch.YAxisProps(min=0), width=12),
                ],
                [
                    cloudwatch.GraphWidget(title="Outposts connected (AWS/Outposts ConnectedStatus, min)",
                                           left=[connected], left_y_axis=cloudwatch.YAxisProps(min=0, max=1),
                                           width=12),
                    cloudwatch.AlarmStatusWidget(title="Lifeline workflow alarms", alarms=workflow_alarms,
                                                 width=12),
                ],
            ],
        )  # fmt: skip
