"""The in-cluster objects of the contract, and applying them: one implementation for the Region's
RBAC bootstrap Lambda and the lab.

- ClusterRoleBinding ``lifeline-breakglass``: the break-glass group -> ``cluster-admin`` (or a narrower
  ClusterRole). Deleting it revokes every Lifeline certificate at once.
- ClusterRole + ClusterRoleBinding ``lifeline-csr-requester``: the agents' group (IAM, bootstrap) and the
  break-glass group (renewal with the current certificate) may create and approve client CSRs.
- ``kube-system/aws-auth`` entries mapping the agent IAM principals to the agents' group (CONFIG_MAP mode).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import yaml

from lifeline_agent.contract import AGENTS_GROUP, DEFAULT_BREAKGLASS_GROUP

BREAKGLASS_BINDING = "lifeline-breakglass"
CSR_REQUESTER = "lifeline-csr-requester"
CLIENT_SIGNER = "kubernetes.io/kube-apiserver-client"
AWS_AUTH = ("kube-system", "aws-auth")
MANAGED_BY = {"app.kubernetes.io/managed-by": "lifeline"}

_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::(\d{12}):role/(?:[\w+=,.@-]+/)*[\w+=,.@-]+$")
_USER_ARN = re.compile(r"^arn:aws[a-z-]*:iam::(\d{12}):user/(?:[\w+=,.@-]+/)*([\w+=,.@-]+)$")


class RbacError(ValueError):
    """An input to the RBAC bootstrap is not acceptable; the message says which."""


def _meta(name: str) -> dict[str, Any]:
    return {"name": name, "labels": dict(MANAGED_BY)}


def breakglass_binding(group: str = DEFAULT_BREAKGLASS_GROUP, cluster_role: str = "cluster-admin") -> dict[str, Any]:
    if group.startswith("system:"):
        raise RbacError(f"break-glass group {group!r}: system: groups cannot be revoked by RBAC")
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": _meta(BREAKGLASS_BINDING),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_role},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}],
    }


def csr_requester_role() -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": _meta(CSR_REQUESTER),
        "rules": [
            {
                "apiGroups": ["certificates.k8s.io"],
                "resources": ["certificatesigningrequests"],
                "verbs": ["create", "get", "list", "watch"],
            },
            {
                "apiGroups": ["certificates.k8s.io"],
                "resources": ["certificatesigningrequests/approval"],
                "verbs": ["update"],
            },
            {
                "apiGroups": ["certificates.k8s.io"],
                "resources": ["signers"],
                "resourceNames": [CLIENT_SIGNER],
                "verbs": ["approve"],
            },
        ],
    }


def csr_requester_binding(groups: Sequence[str]) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": _meta(CSR_REQUESTER),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": CSR_REQUESTER},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": g} for g in groups],
    }


def lifeline_objects(
    breakglass_group: str = DEFAULT_BREAKGLASS_GROUP,
    *,
    agents_group: str = AGENTS_GROUP,
    breakglass_cluster_role: str = "cluster-admin",
) -> list[dict[str, Any]]:
    """Every RBAC object of the contract, in apply order."""
    return [
        breakglass_binding(breakglass_group, breakglass_cluster_role),
        csr_requester_role(),
        csr_requester_binding([agents_group, breakglass_group]),
    ]


def aws_auth_entries(
    principal_arns: Iterable[str], agents_group: str = AGENTS_GROUP
) -> dict[str, list[dict[str, Any]]]:
    """mapRoles/mapUsers entries for the agent principals (EKS CONFIG_MAP authentication mode)."""
    roles: list[dict[str, Any]] = []
    users: list[dict[str, Any]] = []
    for arn in principal_arns:
        if _ROLE_ARN.fullmatch(arn):
            roles.append({"rolearn": arn, "username": "lifeline-agent:{{SessionName}}", "groups": [agents_group]})
        elif match := _USER_ARN.fullmatch(arn):
            users.append({"userarn": arn, "username": f"lifeline-agent:{match.group(2)}", "groups": [agents_group]})
        else:
            raise RbacError(f"agent principal {arn!r} is not an IAM role or user ARN")
    return {"mapRoles": roles, "mapUsers": users}


def merge_aws_auth(existing_data: dict[str, str] | None, principal_arns: Iterable[str],
                   agents_group: str = AGENTS_GROUP) -> dict[str, str]:
    """The aws-auth ``data`` with the agent entries added or updated; other entries are kept as they were."""
    data = dict(existing_data or {})
    wanted = aws_auth_entries(principal_arns, agents_group)
    for key, arn_key in (("mapRoles", "rolearn"), ("mapUsers", "userarn")):
        try:
            current = yaml.safe_load(data.get(key) or "[]") or []
        except yaml.YAMLError as exc:
            raise RbacError(f"aws-auth {key} is not valid YAML: {exc}") from exc
        if not isinstance(current, list):
            raise RbacError(f"aws-auth {key} is not a list")
        ours = {entry[arn_key] for entry in wanted[key]}
        merged = [e for e in current if not (isinstance(e, dict) and e.get(arn_key) in ours)] + wanted[key]
        if merged:
            data[key] = yaml.safe_dump(merged, sort_keys=False, default_flow_style=False)
    return data


def apply_objects(api_client: Any, objects: Iterable[dict[str, Any]]) -> list[str]:
    """Create each cluster-scoped RBAC object, or replace it when it exists. Returns ``kind/name`` applied."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    rbac = client.RbacAuthorizationV1Api(api_client)
    operations: dict[str, tuple[Callable[..., Any], Callable[..., Any], Callable[..., Any]]] = {
        "ClusterRole": (rbac.create_cluster_role, rbac.replace_cluster_role, rbac.read_cluster_role),
        "ClusterRoleBinding": (
            rbac.create_cluster_role_binding,
            rbac.replace_cluster_role_binding,
            rbac.read_cluster_role_binding,
        ),
    }
    applied = []
    for obj in objects:
        kind, name = obj["kind"], obj["metadata"]["name"]
        if kind not in operations:
            raise RbacError(f"apply_objects: unsupported kind {kind}")
        create, replace, read = operations[kind]
        try:
            create(obj)
        except ApiException as exc:
            if exc.status != 409:
                raise
            current = read(name)
            body = dict(obj, metadata=dict(obj["metadata"], resourceVersion=current.metadata.resource_version))
            replace(name, body)
        applied.append(f"{kind}/{name}")
    return applied


def apply_aws_auth(api_client: Any, principal_arns: Sequence[str], agents_group: str = AGENTS_GROUP) -> None:
    """Add the agent principals to ``kube-system/aws-auth`` (created when missing), keeping other entries."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(api_client)
    namespace, name = AWS_AUTH
    try:
        current = core.read_namespaced_config_map(name, namespace)
    except ApiException as exc:
        if exc.status != 404:
            raise
        body = client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name=name, namespace=namespace),
            data=merge_aws_auth(None, principal_arns, agents_group),
        )
        core.create_namespaced_config_map(namespace, body)
        return
    data = merge_aws_auth(current.data, principal_arns, agents_group)
    if data != (current.data or {}):
        current.data = data
        core.replace_namespaced_config_map(name, namespace, current)
