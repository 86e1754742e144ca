"""RollbackRbac: remove what one BootstrapRbac invocation created, and nothing that was there before it.

Used in two places: by BootstrapRbac itself when it fails part-way, and as the state after a failed
StoreSecret (the secret is written last, so a cluster without its secret keeps none of the RBAC either).
What existed before the invocation (objects, other aws-auth entries, access entries) is never touched.
"""

from __future__ import annotations

from typing import Any

import botocore.exceptions
import yaml
from lifeline_agent import rbac
from lifeline_agent.kube import KubeSession

from lambdas.aws import error_code
from lambdas.errors import RbacRollbackFailed
from lambdas.models import ClusterView, CreatedRbac

_MAP_KEYS = (("mapRoles", "rolearn"), ("mapUsers", "userarn"))


def absent_objects(session: KubeSession, objects: list[dict[str, Any]]) -> list[str]:
    """``kind/name`` of the objects that do not exist yet (a 403 here means the workflow is not admin)."""
    return [f"{obj['kind']}/{obj['metadata']['name']}" for obj in objects
            if rbac.read_object(session, obj["kind"], obj["metadata"]["name"]) is None]  # fmt: skip


def _mapped_arns(data: dict[str, str] | None) -> set[str]:
    arns: set[str] = set()
    for key, arn_key in _MAP_KEYS:
        try:
            entries = yaml.safe_load((data or {}).get(key) or "[]") or []
        except yaml.YAMLError as exc:
            raise rbac.RbacError(f"aws-auth {key} is not valid YAML: {exc}") from None
        if isinstance(entries, list):
            arns.update(str(e[arn_key]) for e in entries if isinstance(e, dict) and arn_key in e)
    return arns


def aws_auth_additions(session: KubeSession, principals: tuple[str, ...]) -> tuple[bool, list[str]]:
    """(aws-auth does not exist yet, the principals it has no entry for yet)."""
    current = rbac.read_aws_auth(session)
    if current is None:
        return True, list(principals)
    mapped = _mapped_arns(current.get("data"))
    return False, [p for p in principals if p not in mapped]


def _without(data: dict[str, str], principals: set[str]) -> dict[str, str]:
    kept = dict(data)
    for key, arn_key in _MAP_KEYS:
        entries = yaml.safe_load(kept.get(key) or "[]") or []
        if not isinstance(entries, list):
            continue
        remaining = [e for e in entries if not (isinstance(e, dict) and e.get(arn_key) in principals)]
        if remaining:
            kept[key] = yaml.safe_dump(remaining, sort_keys=False, default_flow_style=False)
        else:
            kept.pop(key, None)
    return kept


def _remove_aws_auth_entries(session: KubeSession, created: CreatedRbac) -> list[str]:
    current = rbac.read_aws_auth(session)
    if current is None:
        return []
    existing = current.get("data") or {}
    data = _without(existing, set(created.awsAuthPrincipals))
    if created.awsAuthCreated and not data:
        namespace, name = rbac.AWS_AUTH
        rbac.delete_object(session, rbac.AWS_AUTH_KIND, name)
        return [f"ConfigMap/{namespace}/{name}"]
    if data != existing:
        rbac.write_aws_auth(session, current, data)
    return [f"aws-auth entry {arn}" for arn in created.awsAuthPrincipals]


def _delete_objects(session: KubeSession, names: list[str]) -> list[str]:
    removed = []
    for qualified in reversed(names):
        kind, name = qualified.split("/", 1)
        if rbac.delete_object(session, kind, name):
            removed.append(qualified)
    return removed


def _delete_access_entries(eks: Any, cluster: ClusterView, principals: list[str]) -> list[str]:
    removed = []
    for principal in principals:
        try:
            eks.delete_access_entry(clusterName=cluster.name, principalArn=principal)
            removed.append(f"access entry {principal}")
        except botocore.exceptions.ClientError as exc:
            if error_code(exc) != "ResourceNotFoundException":
                raise
    return removed


def rollback(session: KubeSession, eks: Any, cluster: ClusterView, created: CreatedRbac, *,
             because: str) -> list[str]:  # fmt: skip
    """Remove ``created``; returns what was removed. ``RbacRollbackFailed`` (naming ``because`` and what is
    left) when the cluster or EKS refuses."""
    try:
        removed = _delete_access_entries(eks, cluster, created.accessEntries)
        if created.awsAuthCreated or created.awsAuthPrincipals:
            removed += _remove_aws_auth_entries(session, created)
        return removed + _delete_objects(session, created.objects)
    except Exception as exc:
        left = [*created.objects, *created.awsAuthPrincipals, *created.accessEntries]
        raise RbacRollbackFailed(
            f"cluster {cluster.name}: after {because}, removing what this execution created failed "
            f"({type(exc).__name__}: {str(exc)[:200]}); may be left: {', '.join(left)}"
        ) from None
