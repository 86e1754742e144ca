"""Lambda handler: BootstrapRbac. The IAM token is never logged."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas import aws
from lambdas.bootstrap_rbac.logic import bootstrap
from lambdas.config import WorkflowConfig
from lambdas.models import ClusterStepInput
from lambdas.observability import instrumented, logger, metrics
from lambdas.validation import parse_input


@instrumented
def handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    request = parse_input(ClusterStepInput, event)
    result = bootstrap(request.cluster, config=WorkflowConfig.from_environment(), eks=aws.client("eks"))
    logger.info("rbac bootstrapped", extra={"cluster": request.cluster.name, "applied": result.applied,
                                            "authMapping": result.authMapping})
    metrics.add_metric(name="RbacBootstrapped", unit=MetricUnit.Count, value=1)
    return result.as_dict()
