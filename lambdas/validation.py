"""Turning pydantic validation errors into short, value-free messages for named failures."""

from __future__ import annotations

from pydantic import ValidationError

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
