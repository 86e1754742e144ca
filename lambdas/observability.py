"""The one place the Lambdas get their Logger, Tracer and Metrics (aws-lambda-powertools).

Service name and metric namespace come from POWERTOOLS_* environment variables set by the stack; the
defaults here make the plain functions usable outside Lambda. Tracing turns itself off outside Lambda.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

SERVICE = "lifeline"
NAMESPACE = "Lifeline"

logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)

Handler = Callable[[Any, Any], dict[str, Any]]


def instrumented(handler: Handler) -> Handler:
    """Lambda context in every log line, metrics flushed, the invocation traced, failures counted and
    logged by name (the event is never logged: it may carry certificate data)."""

    @functools.wraps(handler)
    def counted(event: Any, context: Any) -> dict[str, Any]:
        try:
            return handler(event, context)
        except Exception as exc:
            metrics.add_metric(name="StepFailures", unit=MetricUnit.Count, value=1)
            logger.warning("step failed", extra={"error": type(exc).__name__, "reason": str(exc)[:500]})
            raise

    traced = tracer.capture_lambda_handler(counted)
    flushed = metrics.log_metrics(traced)
    return logger.inject_lambda_context(clear_state=True)(flushed)
