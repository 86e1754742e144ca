"""Lambda handler: CheckCluster (DescribeCluster + READY/WAIT/SKIP or a named failure)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas import aws
from lambdas.check_cluster.logic import assess, describe_cluster
from lambdas.config import WorkflowConfig
from lambdas.errors import InvalidRequest
from lambdas.models import CheckInput
from lambdas.observability import instrumented, logger, metrics
from lambdas.timeutil import parse_timestamp, utcnow
from lambdas.validation import parse_input


@instrumented
def handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    request = parse_input(CheckInput, event)
    try:
        deadline = parse_timestamp(request.deadline)
    except ValueError as exc:
        raise InvalidRequest(f"deadline: {exc}") from None
    cluster = describe_cluster(aws.client("eks"), request.clusterName)
    result = assess(
        cluster,
        deadline=deadline,
        now=utcnow(),
        allowed_outpost_arns=WorkflowConfig.from_environment().allowed_outpost_arns,
    )
    logger.info("cluster checked", extra={"cluster": request.clusterName, "verdict": result.verdict,
                                          "status": result.status})
    metrics.add_metric(name=f"ClusterCheck{result.verdict.title()}", unit=MetricUnit.Count, value=1)
    return result.model_dump(mode="json")
