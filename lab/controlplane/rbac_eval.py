"""RBAC rule evaluation as kube-apiserver's RBAC authorizer does it (pure logic, no I/O)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

MASTERS_GROUP = "system:masters"
AUTHENTICATED_GROUP = "system:authenticated"
UNAUTHENTICATED_GROUP = "system:unauthenticated"
ANONYMOUS_USER = "system:anonymous"
RBAC_GROUP = "rbac.authorization.k8s.io"

Obj = Mapping[str, Any]


@dataclass(frozen=True)
class UserInfo:
    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: Mapping[str, list[str]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        info: dict[str, Any] = {"username": self.name, "groups": list(self.groups)}
        if self.uid:
            info["uid"] = self.uid
        if self.extra:
            info["extra"] = {k: list(v) for k, v in self.extra.items()}
        return info


@dataclass(frozen=True)
class Attributes:
    """One request as the authorizer sees it (Kubernetes ``authorizer.Attributes``)."""

    user: UserInfo
    verb: str
    resource_request: bool
    api_group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""


class Policy(Protocol):
    """Where the RBAC objects come from (the store, or plain lists in tests)."""

    def cluster_role(self, name: str) -> Obj | None: ...
    def role(self, namespace: str, name: str) -> Obj | None: ...
    def cluster_role_bindings(self) -> Iterable[Obj]: ...
    def role_bindings(self, namespace: str) -> Iterable[Obj]: ...


@dataclass
class StaticPolicy:
    """A ``Policy`` over plain object lists."""

    objects: list[Obj]

    def _of(self, kind: str) -> list[Obj]:
        return [o for o in self.objects if o.get("kind") == kind]

    def cluster_role(self, name: str) -> Obj | None:
        return next((o for o in self._of("ClusterRole") if o["metadata"]["name"] == name), None)

    def role(self, namespace: str, name: str) -> Obj | None:
        return next(
            (o for o in self._of("Role")
             if o["metadata"]["name"] == name and o["metadata"].get("namespace") == namespace),
            None,
        )

    def cluster_role_bindings(self) -> Iterable[Obj]:
        return self._of("ClusterRoleBinding")

    def role_bindings(self, namespace: str) -> Iterable[Obj]:
        return [o for o in self._of("RoleBinding") if o["metadata"].get("namespace") == namespace]


def _has(values: Iterable[str] | None, wanted: str) -> bool:
    values = list(values or ())
    return "*" in values or wanted in values


def resource_matches(rule_resources: Iterable[str] | None, resource: str, subresource: str) -> bool:
    combined = f"{resource}/{subresource}" if subresource else resource
    for candidate in rule_resources or ():
        if candidate in ("*", combined):
            return True
        if subresource and candidate == f"*/{subresource}":
            return True
    return False


def non_resource_url_matches(rule_urls: Iterable[str] | None, path: str) -> bool:
    for candidate in rule_urls or ():
        if candidate in ("*", path):
            return True
        if candidate.endswith("*") and path.startswith(candidate[:-1]):
            return True
    return False


def rule_allows(attrs: Attributes, rule: Obj) -> bool:
    if not _has(rule.get("verbs"), attrs.verb):
        return False
    if not attrs.resource_request:
        return non_resource_url_matches(rule.get("nonResourceURLs"), attrs.path)
    names = rule.get("resourceNames") or []
    return (
        _has(rule.get("apiGroups"), attrs.api_group)
        and resource_matches(rule.get("resources"), attrs.resource, attrs.subresource)
        and (not names or attrs.name in names)
    )


def subject_matches(subject: Obj, user: UserInfo, binding_namespace: str) -> bool:
    kind = subject.get("kind")
    name = subject.get("name", "")
    if kind == "User":
        return bool(user.name == name)
    if kind == "Group":
        return name in user.groups
    if kind == "ServiceAccount":
        namespace = subject.get("namespace") or binding_namespace
        return bool(user.name == f"system:serviceaccount:{namespace}:{name}")
    return False


def _describe_subject(subject: Obj, binding_namespace: str) -> str:
    if subject.get("kind") == "ServiceAccount":
        return f'ServiceAccount "{subject.get("namespace") or binding_namespace}/{subject.get("name")}"'
    return f'{subject.get("kind")} "{subject.get("name")}"'


def authorize(attrs: Attributes, policy: Policy) -> Decision:
    """Allow if ``system:masters`` or any binding of the user grants a matching rule."""
    if MASTERS_GROUP in attrs.user.groups:
        return Decision(True, "")
    problems: list[str] = []

    def check(binding: Obj, binding_namespace: str) -> str | None:
        subjects = [s for s in binding.get("subjects") or [] if subject_matches(s, attrs.user, binding_namespace)]
        if not subjects:
            return None
        ref = binding.get("roleRef") or {}
        role_kind, role_name = ref.get("kind"), ref.get("name", "")
        if role_kind == "ClusterRole":
            role = policy.cluster_role(role_name)
            missing = f'clusterrole.{RBAC_GROUP} "{role_name}" not found'
        else:
            role = policy.role(binding_namespace, role_name)
            missing = f'role.{RBAC_GROUP} "{role_name}" not found'
        if role is None:
            problems.append(missing)
            return None
        if any(rule_allows(attrs, rule) for rule in role.get("rules") or []):
            name = binding["metadata"]["name"]
            label = f"{name}/{binding_namespace}" if binding_namespace else name
            return (
                f'RBAC: allowed by {binding.get("kind")} "{label}" of {role_kind} "{role_name}" '
                f"to {_describe_subject(subjects[0], binding_namespace)}"
            )
        return None

    for binding in policy.cluster_role_bindings():
        reason = check(binding, "")
        if reason:
            return Decision(True, reason)
    if attrs.namespace:
        for binding in policy.role_bindings(attrs.namespace):
            reason = check(binding, attrs.namespace)
            if reason:
                return Decision(True, reason)
    return Decision(False, f"RBAC: [{', '.join(problems)}]" if len(problems) > 1 else
                    (f"RBAC: {problems[0]}" if problems else ""))


def forbidden_message(attrs: Attributes, reason: str = "") -> str:
    """The text kube-apiserver puts after ``... is forbidden: `` (``responsewriters.forbiddenMessage``)."""
    if not attrs.resource_request:
        message = f'User "{attrs.user.name}" cannot {attrs.verb} path "{attrs.path}"'
    else:
        resource = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
        scope = f'in the namespace "{attrs.namespace}"' if attrs.namespace else "at the cluster scope"
        message = (
            f'User "{attrs.user.name}" cannot {attrs.verb} resource "{resource}" '
            f'in API group "{attrs.api_group}" {scope}'
        )
    return f"{message}: {reason}" if reason else message
