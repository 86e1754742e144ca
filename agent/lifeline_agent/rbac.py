"""The in-cluster objects of the contract, and applying them through :mod:`lifeline_agent.kube`: one
implementation for the Region's RBAC bootstrap Lambda and the lab.

- ClusterRoleBinding ``lifeline-breakglass``: the break-glass group -> ``cluster-admin`` (or a narrower
  ClusterRole). Deleting it revokes every Lifeline certificate at once.
- ClusterRole + ClusterRoleBinding ``lifeline-csr-requester``: the agents' group (IAM, bootstrap) and the
  break-glass group (renewal with the current certificate) may create and approve client CSRs.
- ClusterRoleBinding ``lifeline-operators``: the operators' group of personal kubeconfigs (``lifeline-agent
  grant``) -> ``cluster-admin`` (or a narrower ClusterRole). Deleting it revokes every personal grant at once.
- ``kube-system/aws-auth`` entries mapping the agent IAM principals to the agents' group (CONFIG_MAP mode).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import yaml

from lifeline_agent import kube
from lifeline_agent.contract import AGENTS_GROUP, DEFAULT_BREAKGLASS_GROUP, DEFAULT_OPERATORS_GROUP
from lifeline_agent.kube import KubeSession

BREAKGLASS_BINDING = "lifeline-breakglass"
OPERATORS_BINDING = "lifeline-operators"
CSR_REQUESTER = "lifeline-csr-requester"
CLIENT_SIGNER = "kubernetes.io/kube-apiserver-client"
AWS_AUTH = ("kube-system", "aws-auth")
AWS_AUTH_KIND = "ConfigMap/kube-system"
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


def operators_binding(group: str = DEFAULT_OPERATORS_GROUP, cluster_role: str = "cluster-admin") -> dict[str, Any]:
    """The operators' group (personal kubeconfigs issued by ``lifeline-agent grant``) -> ``cluster_role``."""
    if group.startswith("system:"):
        raise RbacError(f"operators' group {group!r}: system: groups cannot be revoked by RBAC")
    binding = breakglass_binding(group, cluster_role)
    binding["metadata"] = _meta(OPERATORS_BINDING)
    return binding


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
    operators_group: str = DEFAULT_OPERATORS_GROUP,
    operators_cluster_role: str = "cluster-admin",
) -> list[dict[str, Any]]:
    """Every RBAC object of the contract, in apply order."""
    distinct = {breakglass_group, agents_group, operators_group}
    if len(distinct) != 3:
        raise RbacError(f"the break-glass ({breakglass_group!r}), agents' ({agents_group!r}) and operators' "
                        f"({operators_group!r}) groups must be three different groups")  # fmt: skip
    return [
        breakglass_binding(breakglass_group, breakglass_cluster_role),
        operators_binding(operators_group, operators_cluster_role),
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


# --- applying them, through lifeline_agent.kube (the agent's own API client) ---------------------------

_COLLECTIONS = {
    "ClusterRole": "/apis/rbac.authorization.k8s.io/v1/clusterroles",
    "ClusterRoleBinding": "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
    "ConfigMap/kube-system": "/api/v1/namespaces/kube-system/configmaps",
}


def _collection(kind: str) -> str:
    try:
        return _COLLECTIONS[kind]
    except KeyError:
        raise RbacError(f"unsupported kind {kind}") from None


def read_object(session: KubeSession, kind: str, name: str) -> dict[str, Any] | None:
    """The object, or ``None`` when it does not exist."""
    try:
        return session.request("GET", f"{_collection(kind)}/{name}")
    except kube.NotFound:
        return None


def delete_object(session: KubeSession, kind: str, name: str) -> bool:
    """Delete the object; False when it did not exist."""
    try:
        session.request("DELETE", f"{_collection(kind)}/{name}")
    except kube.NotFound:
        return False
    return True


def apply_objects(session: KubeSession, objects: Iterable[dict[str, Any]]) -> list[str]:
    """Create each cluster-scoped RBAC object, or replace it when it exists. Returns ``kind/name`` applied."""
    applied = []
    for obj in objects:
        kind, name = obj["kind"], obj["metadata"]["name"]
        collection = _collection(kind)
        try:
            session.request("POST", collection, obj)
        except kube.Conflict:
            current = session.request("GET", f"{collection}/{name}")
            version = (current.get("metadata") or {}).get("resourceVersion")
            session.request("PUT", f"{collection}/{name}",
                            dict(obj, metadata=dict(obj["metadata"], resourceVersion=version)))  # fmt: skip
        applied.append(f"{kind}/{name}")
    return applied


def read_aws_auth(session: KubeSession) -> dict[str, Any] | None:
    """``kube-system/aws-auth``, or ``None`` when the cluster has none."""
    return read_object(session, AWS_AUTH_KIND, AWS_AUTH[1])


def write_aws_auth(session: KubeSession, current: dict[str, Any] | None, data: dict[str, str]) -> None:
    """Create aws-auth with ``data`` (``current`` is None) or replace the ``current`` one's data."""
    collection = _collection(AWS_AUTH_KIND)
    if current is None:
        namespace, name = AWS_AUTH
        config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace}}
        session.request("POST", collection, dict(config_map, data=data))
    else:
        session.request("PUT", f"{collection}/{AWS_AUTH[1]}", dict(current, data=data))


def apply_aws_auth(session: KubeSession, principal_arns: Sequence[str], agents_group: str = AGENTS_GROUP) -> None:
    """Add the agent principals to ``kube-system/aws-auth`` (created when missing), keeping other entries."""
    current = read_aws_auth(session)
    existing = None if current is None else current.get("data")
    data = merge_aws_auth(existing, principal_arns, agents_group)
    if current is None or data != (existing or {}):
        write_aws_auth(session, current, data)
