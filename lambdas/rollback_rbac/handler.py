"""Lambda handler: RollbackRbac (after StoreSecret failed: remove what BootstrapRbac created)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas import aws
from lambdas.bootstrap_rbac.logic import undo
from lambdas.config import WorkflowConfig
from lambdas.models import RollbackInput
from lambdas.observability import instrumented, logger, metrics
from lambdas.validation import parse_input


@instrumented
def handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    request = parse_input(RollbackInput, event)
    removed = undo(request.cluster, request.created, config=WorkflowConfig.from_environment(),
                   eks=aws.client("eks"), because=f"{request.failure.Error} in a later step")
    logger.info("rbac rolled back", extra={"cluster": request.cluster.name, "removed": removed,
                                           "after": request.failure.Error})
    metrics.add_metric(name="RbacRolledBack", unit=MetricUnit.Count, value=1)
    return {"removed": removed}
