"""AWS access shared by the steps: clients, and sorting botocore errors into transient or final."""

from __future__ import annotations

from typing import Any

import boto3
import botocore.client
import botocore.exceptions

from lambdas.errors import TransientAwsError

TRANSIENT_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "ServerException",
        "InternalFailure",
        "InternalServiceError",
        "InternalServiceErrorException",
    }
)
_CLIENT_CONFIG = botocore.client.Config(connect_timeout=5, read_timeout=20, retries={"mode": "standard"})


def client(service: str) -> Any:
    """A boto3 client; region and endpoint come from the environment (AWS_REGION, AWS_ENDPOINT_URL)."""
    return boto3.client(service, config=_CLIENT_CONFIG)


def error_code(exc: botocore.exceptions.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def is_transient(exc: Exception) -> bool:
    if isinstance(exc, botocore.exceptions.ClientError):
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        return error_code(exc) in TRANSIENT_CODES or status >= 500
    return isinstance(exc, botocore.exceptions.BotoCoreError | ConnectionError | TimeoutError)


def raise_transient(exc: Exception, what: str) -> None:
    """Re-raise ``exc`` as ``TransientAwsError`` when retrying may help; otherwise return."""
    if is_transient(exc):
        raise TransientAwsError(f"{what}: {type(exc).__name__}: {exc}") from exc
