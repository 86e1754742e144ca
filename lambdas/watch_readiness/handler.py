"""Lambda handler: WatchReadiness (the cluster's readiness alarm, after the agents' grace period)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas import aws
from lambdas.config import WorkflowConfig
from lambdas.models import ClusterStepInput
from lambdas.observability import instrumented, logger, metrics
from lambdas.validation import parse_input
from lambdas.watch_readiness.logic import put_alarm


@instrumented
def handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    request = parse_input(ClusterStepInput, event)
    config = WorkflowConfig.from_environment()
    watched = put_alarm(aws.client("cloudwatch"), request.cluster, topic_arn=config.alarm_topic_arn)
    logger.info("readiness alarm set", extra={"cluster": request.cluster.name, **watched})
    metrics.add_metric(name="ReadinessAlarmsSet", unit=MetricUnit.Count, value=1)
    return watched
