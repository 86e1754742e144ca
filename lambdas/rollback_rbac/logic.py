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

from lambdas.aws import error_code
from lambdas.errors import RbacRollbackFailed
from lambdas.models import ClusterView, CreatedRbac

_MAP_KEYS = (("mapRoles", "rolearn"), ("mapUsers", "userarn"))


def absent_objects(api_client: Any, objects: list[dict[str, Any]]) -> list[str]:
    """``kind/name`` of the objects that do not exist yet (a 403 here means the workflow is not admin)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    api = client.RbacAuthorizationV1Api(api_client)
    readers = {"ClusterRole": api.read_cluster_role, "ClusterRoleBinding": api.read_cluster_role_binding}
    absent = []
    for obj in objects:
        kind, name = obj["kind"], obj["metadata"]["name"]
        try:
            readers[kind](name)
        except ApiException as exc:
            if exc.status != 404:
                raise
            absent.append(f"{kind}/{name}")
    return absent


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


def aws_auth_additions(api_client: Any, principals: tuple[str, ...]) -> tuple[bool, list[str]]:
    """(aws-auth does not exist yet, the principals it has no entry for yet)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    namespace, name = rbac.AWS_AUTH
    try:
        current = client.CoreV1Api(api_client).read_namespaced_config_map(name, namespace)
    except ApiException as exc:
        if exc.status != 404:
            raise
        return True, list(principals)
    mapped = _mapped_arns(current.data)
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


def _remove_aws_auth_entries(api_client: Any, created: CreatedRbac) -> list[str]:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(api_client)
    namespace, name = rbac.AWS_AUTH
    try:
        current = core.read_namespaced_config_map(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return []
        raise
    data = _without(current.data or {}, set(created.awsAuthPrincipals))
    if created.awsAuthCreated and not data:
        core.delete_namespaced_config_map(name, namespace)
        return [f"ConfigMap/{namespace}/{name}"]
    if data != (current.data or {}):
        current.data = data
        core.replace_namespaced_config_map(name, namespace, current)
    return [f"aws-auth entry {arn}" for arn in created.awsAuthPrincipals]


def _delete_objects(api_client: Any, names: list[str]) -> list[str]:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    api = client.RbacAuthorizationV1Api(api_client)
    deleters = {"ClusterRole": api.delete_cluster_role, "ClusterRoleBinding": api.delete_cluster_role_binding}
    removed = []
    for qualified in reversed(names):
        kind, name = qualified.split("/", 1)
        try:
            deleters[kind](name)
            removed.append(qualified)
        except ApiException as exc:
            if exc.status != 404:
                raise
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


def rollback(api_client: Any, eks: Any, cluster: ClusterView, created: CreatedRbac, *, because: str) -> list[str]:
    """Remove ``created``; returns what was removed. ``RbacRollbackFailed`` (naming ``because`` and what is
    left) when the cluster or EKS refuses."""
    try:
        removed = _delete_access_entries(eks, cluster, created.accessEntries)
        if created.awsAuthCreated or created.awsAuthPrincipals:
            removed += _remove_aws_auth_entries(api_client, created)
        return removed + _delete_objects(api_client, created.objects)
    except Exception as exc:
        left = [*created.objects, *created.awsAuthPrincipals, *created.accessEntries]
        raise RbacRollbackFailed(
            f"cluster {cluster.name}: after {because}, removing what this execution created failed "
            f"({type(exc).__name__}: {str(exc)[:200]}); may be left: {', '.join(left)}"
        ) from None
