"""Lambda handler: CreateCluster (input: the EKS CreateCluster parameters made by NormaliseRequest)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas import aws
from lambdas.create_cluster.logic import create_cluster
from lambdas.errors import InvalidRequest
from lambdas.observability import instrumented, logger, metrics


@instrumented
def handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    if not isinstance(event, dict) or not isinstance(event.get("name"), str):
        raise InvalidRequest("CreateCluster input must be the normalised CreateCluster parameters")
    result = create_cluster(aws.client("eks"), event)
    logger.info("create cluster", extra={"cluster": result["clusterName"], "newlyCreated": result["created"]})
    metrics.add_metric(name="ClustersCreated" if result["created"] else "ClustersAlreadyExisting",
                       unit=MetricUnit.Count, value=1)
    return result
