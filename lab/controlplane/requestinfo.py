"""Turn an HTTP request into Kubernetes ``RequestInfo`` (verb, group, resource, namespace, name)."""

from __future__ import annotations

from dataclasses import dataclass

from .resources import ResourceType, lookup

_NAMESPACE_SUBRESOURCES = ("status", "finalize")


@dataclass(frozen=True)
class RequestInfo:
    resource_request: bool
    verb: str
    path: str
    api_group: str = ""
    api_version: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    rtype: ResourceType | None = None

    @property
    def object_namespace(self) -> str:
        """The namespace part of the stored object's key ("" for cluster-scoped kinds like Namespace)."""
        return self.namespace if self.rtype is not None and self.rtype.namespaced else ""


def parse(method: str, path: str, watch: bool = False) -> RequestInfo:
    parts = [p for p in path.strip("/").split("/") if p]
    method = method.upper()
    if len(parts) >= 3 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 4 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return RequestInfo(False, method.lower(), path)
    namespace = ""
    if rest[0] == "namespaces" and len(rest) >= 2:
        namespace = rest[1]
        if len(rest) >= 3 and rest[2] not in _NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else ""
    subresource = rest[2] if len(rest) > 2 else ""
    if method == "GET":
        verb = "watch" if watch else ("get" if name else "list")
    elif method == "POST":
        verb = "create"
    elif method == "PUT":
        verb = "update"
    elif method == "PATCH":
        verb = "patch"
    elif method == "DELETE":
        verb = "delete" if name else "deletecollection"
    else:
        verb = method.lower()
    return RequestInfo(
        True, verb, path, group, version, resource, subresource, namespace, name, lookup(group, version, resource)
    )
