"""Lambda handler: StoreSecret. Logs the secret's name and CA fingerprint only, never its value."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas import aws
from lambdas.config import WorkflowConfig
from lambdas.models import ClusterStepInput
from lambdas.observability import instrumented, logger, metrics
from lambdas.store_secret.logic import build_secret, store_secret
from lambdas.validation import parse_input


@instrumented
def handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    request = parse_input(ClusterStepInput, event)
    config = WorkflowConfig.from_environment()
    secret = build_secret(request.cluster, breakglass_group=config.breakglass_group)
    stored = store_secret(
        aws.client("secretsmanager"),
        secret,
        kms_key_id=config.secret_kms_key_id,
        readers=config.agent_principal_arns,
        writer=config.secret_writer_arn,
    )
    logger.info("secret stored", extra={"secret": stored.secretName, "changed": stored.changed,
                                        "caSha256": stored.caSha256})
    metrics.add_metric(name="SecretsWritten" if stored.changed else "SecretsUnchanged", unit=MetricUnit.Count,
                       value=1)
    return stored.as_dict()
