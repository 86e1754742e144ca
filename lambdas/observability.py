"""The one place the Lambdas get their Logger, Tracer and Metrics (aws-lambda-powertools).

Service name and metric namespace come from POWERTOOLS_* environment variables set by the stack; the
defaults here make the plain functions usable outside Lambda. Tracing turns itself off outside Lambda.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer

SERVICE = "lifeline"
NAMESPACE = "Lifeline"

logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
