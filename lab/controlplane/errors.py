"""Kubernetes ``Status`` errors, phrased exactly as kube-apiserver phrases them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


def qualified(group: str, resource: str) -> str:
    """``resource.group`` (or just ``resource`` for the core group), as GroupResource.String()."""
    return f"{resource}.{group}" if group else resource


class ApiError(Exception):
    """An error the API server answers with a ``Status`` object."""

    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


def _details(group: str, kind: str, name: str) -> dict[str, Any]:
    details: dict[str, Any] = {"kind": kind}
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    return details


def not_found(group: str, resource: str, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{qualified(group, resource)} "{name}" not found',
                    _details(group, resource, name))


def already_exists(group: str, resource: str, name: str) -> ApiError:
    return ApiError(409, "AlreadyExists", f'{qualified(group, resource)} "{name}" already exists',
                    _details(group, resource, name))


def conflict(group: str, resource: str, name: str) -> ApiError:
    message = (
        f'Operation cannot be fulfilled on {qualified(group, resource)} "{name}": the object has been '
        "modified; please apply your changes to the latest version and try again"
    )
    return ApiError(409, "Conflict", message, _details(group, resource, name))


def forbidden(group: str, resource: str, name: str, reason: str) -> ApiError:
    if not resource and not name:
        message = f"forbidden: {reason}"
    elif not name:
        message = f"{qualified(group, resource)} is forbidden: {reason}"
    else:
        message = f'{qualified(group, resource)} "{name}" is forbidden: {reason}'
    return ApiError(403, "Forbidden", message, _details(group, resource, name))


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def method_not_supported(group: str, resource: str, verb: str) -> ApiError:
    return ApiError(405, "MethodNotAllowed", f"{verb} is not supported on resources of kind "
                    f'"{qualified(group, resource)}"', _details(group, resource, ""))


def internal_error(message: str) -> ApiError:
    return ApiError(500, "InternalError", f"Internal error occurred: {message}",
                    {"causes": [{"message": message}]})


def path_not_found() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource",
                    {"causes": [{"reason": "UnexpectedServerResponse", "message": "404 page not found"}]})


@dataclass(frozen=True)
class FieldError:
    """One ``field.Error``: ``Required``, ``Invalid`` (with a Go-formatted value) or ``Unsupported``."""

    field: str
    type: str  # FieldValueRequired, FieldValueInvalid, FieldValueNotSupported, ...
    body: str  # "Required value: ..." / "Invalid value: 599: ..."

    def __str__(self) -> str:
        return f"{self.field}: {self.body}"


def required(field: str, detail: str = "") -> FieldError:
    return FieldError(field, "FieldValueRequired", "Required value" + (f": {detail}" if detail else ""))


def invalid(field: str, go_value: str, detail: str) -> FieldError:
    return FieldError(field, "FieldValueInvalid", f"Invalid value: {go_value}: {detail}")


def not_supported(field: str, value: str, allowed: list[str]) -> FieldError:
    choices = ", ".join(f'"{v}"' for v in allowed)
    return FieldError(field, "FieldValueNotSupported", f'Unsupported value: "{value}": supported values: {choices}')


def go_bytes(data: bytes) -> str:
    """Go's ``%#v`` of a ``[]byte``."""
    return "[]byte{" + ", ".join(f"0x{b:x}" for b in data) + "}"


def unprocessable(group: str, kind: str, name: str, errors: list[FieldError]) -> ApiError:
    listed = str(errors[0]) if len(errors) == 1 else "[" + ", ".join(str(e) for e in errors) + "]"
    message = f'{kind}.{group} "{name}" is invalid: {listed}' if group else f'{kind} "{name}" is invalid: {listed}'
    details = _details(group, kind, name)
    details["causes"] = [{"reason": e.type, "message": e.body, "field": e.field} for e in errors]
    return ApiError(422, "Invalid", message, details)
