"""The API resources this control plane serves (what discovery and OpenAPI advertise)."""

from __future__ import annotations

from dataclasses import dataclass

CRUD = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
CREATE_ONLY = ("create",)


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    kind: str
    plural: str
    singular: str
    namespaced: bool
    verbs: tuple[str, ...] = CRUD
    short_names: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    stored: bool = True  # False: create-only review objects that are answered, never kept
    categories: tuple[str, ...] = ()

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def api_version(self) -> str:
        return self.group_version


RESOURCE_TYPES: tuple[ResourceType, ...] = (
    ResourceType("", "v1", "Namespace", "namespaces", "namespace", False, short_names=("ns",),
                 subresources=("status",)),
    ResourceType("", "v1", "Service", "services", "service", True, short_names=("svc",),
                 subresources=("status",), categories=("all",)),
    ResourceType("", "v1", "ConfigMap", "configmaps", "configmap", True, short_names=("cm",)),
    ResourceType("", "v1", "Secret", "secrets", "secret", True),
    ResourceType("", "v1", "ServiceAccount", "serviceaccounts", "serviceaccount", True, short_names=("sa",)),
    ResourceType("", "v1", "Node", "nodes", "node", False, short_names=("no",), subresources=("status",)),
    ResourceType("", "v1", "Pod", "pods", "pod", True, short_names=("po",), subresources=("status",),
                 categories=("all",)),
    ResourceType("", "v1", "Event", "events", "event", True, short_names=("ev",)),
    ResourceType("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", "clusterrole", False),
    ResourceType("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings",
                 "clusterrolebinding", False),
    ResourceType("rbac.authorization.k8s.io", "v1", "Role", "roles", "role", True),
    ResourceType("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", "rolebinding", True),
    ResourceType("certificates.k8s.io", "v1", "CertificateSigningRequest", "certificatesigningrequests",
                 "certificatesigningrequest", False, short_names=("csr",), subresources=("approval", "status")),
    ResourceType("authentication.k8s.io", "v1", "SelfSubjectReview", "selfsubjectreviews",
                 "selfsubjectreview", False, verbs=CREATE_ONLY, stored=False),
    ResourceType("authorization.k8s.io", "v1", "SelfSubjectAccessReview", "selfsubjectaccessreviews",
                 "selfsubjectaccessreview", False, verbs=CREATE_ONLY, stored=False),
    ResourceType("authorization.k8s.io", "v1", "SubjectAccessReview", "subjectaccessreviews",
                 "subjectaccessreview", False, verbs=CREATE_ONLY, stored=False),
)

_BY_PATH = {(t.group, t.version, t.plural): t for t in RESOURCE_TYPES}
_BY_KIND = {(t.group, t.kind): t for t in RESOURCE_TYPES}


def lookup(group: str, version: str, plural: str) -> ResourceType | None:
    return _BY_PATH.get((group, version, plural))


def by_kind(group: str, kind: str) -> ResourceType | None:
    return _BY_KIND.get((group, kind))


def group_versions() -> dict[str, list[str]]:
    """Every API group (``""`` = core) with its versions, in discovery order."""
    groups: dict[str, list[str]] = {}
    for t in RESOURCE_TYPES:
        versions = groups.setdefault(t.group, [])
        if t.version not in versions:
            versions.append(t.version)
    return groups


def types_in(group: str, version: str) -> list[ResourceType]:
    return [t for t in RESOURCE_TYPES if t.group == group and t.version == version]
