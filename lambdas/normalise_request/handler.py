"""Lambda handler: NormaliseRequest (thin: parse, call ``logic.normalise``, count)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas.config import WorkflowConfig
from lambdas.errors import InvalidRequest
from lambdas.normalise_request.logic import normalise
from lambdas.observability import instrumented, logger, metrics
from lambdas.timeutil import utcnow


@instrumented
def handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    if not isinstance(event, dict) or "input" not in event:
        raise InvalidRequest("NormaliseRequest expects the execution input wrapped as {\"input\": ...}")
    request = normalise(event["input"], config=WorkflowConfig.from_environment(), now=utcnow())
    logger.info("request accepted", extra={"cluster": request.clusterName, "trigger": request.trigger,
                                           "create": request.create})
    metrics.add_metric(name="RequestsAccepted", unit=MetricUnit.Count, value=1)
    return request.model_dump(mode="json")
