"""Turning pydantic validation errors into short, value-free messages for named failures."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from lambdas.errors import InvalidRequest

ModelT = TypeVar("ModelT", bound=BaseModel)

MAX_REPORTED_ERRORS = 5


def describe_validation_error(exc: ValidationError) -> str:
    """``field.path: message`` for the first few errors; input values are never echoed (they may be hostile)."""
    parts = []
    for error in exc.errors(include_input=False, include_url=False)[:MAX_REPORTED_ERRORS]:
        location = ".".join(str(part) for part in error["loc"]) or "input"
        parts.append(f"{location}: {error['msg']}")
    more = exc.error_count() - MAX_REPORTED_ERRORS
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts)


def parse_input(model: type[ModelT], event: Any) -> ModelT:
    """``event`` as ``model``, or :class:`InvalidRequest` naming the bad fields (never their values)."""
    try:
        return model.model_validate(event)
    except ValidationError as exc:
        raise InvalidRequest(describe_validation_error(exc)) from None
