"""BootstrapRbac: the contract's in-cluster objects, applied through the cluster's private endpoint.

Authenticates with an EKS IAM token (``lifeline_agent.eks_token``), verifies TLS with the CA EKS returned,
applies ``lifeline_agent.rbac.lifeline_objects`` and maps the agent principals: aws-auth for CONFIG_MAP
clusters, access entries for clusters whose authentication mode includes the EKS API.

All or nothing: what did not exist before is recorded (``created``, also the input of RollbackRbac) and
removed again when a later part of the same invocation fails.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import botocore.exceptions
from lifeline_agent import kube, rbac
from lifeline_agent.eks_token import get_token

from lambdas.aws import error_code, raise_transient
from lambdas.config import WorkflowConfig
from lambdas.errors import ClusterUnreachable, RbacBootstrapFailed
from lambdas.models import ClusterView, CreatedRbac
from lambdas.rollback_rbac.logic import absent_objects, aws_auth_additions, rollback

# Each request to the API server, all of it (connect, TLS, answer): a cut link fails in this time, named.
API_TIMEOUT_SECONDS = 15.0


@dataclass(frozen=True)
class BootstrapResult:
    applied: list[str]
    authMapping: str
    principals: int
    accessEntries: list[str] = field(default_factory=list)
    created: CreatedRbac = field(default_factory=CreatedRbac)

    def as_dict(self) -> dict[str, Any]:
        return {"applied": self.applied, "authMapping": self.authMapping, "principals": self.principals,
                "accessEntries": self.accessEntries, "created": self.created.model_dump(mode="json")}


@contextlib.contextmanager
def session_for(cluster: ClusterView, token: str) -> Iterator[kube.KubeSession]:
    """A session with the cluster's API server: bearer token, TLS verified with the cluster's CA."""
    target = kube.Target(server=cluster.endpoint, ca_pem=base64.b64decode(cluster.certificateAuthorityData))
    with kube.KubeSession(target, kube.Credential(token=token), timeout=API_TIMEOUT_SECONDS) as session:
        yield session


def _api_failure(exc: Exception, cluster: ClusterView) -> Exception:
    if isinstance(exc, kube.Unauthorized | kube.Forbidden):
        return RbacBootstrapFailed(
            f"cluster {cluster.name}: the workflow's principal is not authorised ({exc}); "
            "map the Lifeline cluster-admin role in the cluster (aws-auth or an access entry)"
        )
    if isinstance(exc, kube.TlsError):
        return RbacBootstrapFailed(
            f"cluster {cluster.name}: TLS verification of {cluster.endpoint} with the CA EKS returned failed ({exc})"
        )
    if isinstance(exc, kube.Unreachable):
        return ClusterUnreachable(f"cluster {cluster.name}: {cluster.endpoint} unreachable: {exc}")
    if isinstance(exc, kube.ServerError):  # 5xx, and 429 (kube.TooManyRequests): the server sheds load
        return ClusterUnreachable(f"cluster {cluster.name}: the API server is overloaded or failing: {exc}")
    if isinstance(exc, kube.KubeError):
        return RbacBootstrapFailed(f"cluster {cluster.name}: API server refused an object: {exc}")
    if isinstance(exc, rbac.RbacError):
        return RbacBootstrapFailed(f"cluster {cluster.name}: {exc}")
    return exc


def map_with_access_entries(
    eks: Any, cluster: ClusterView, principals: tuple[str, ...], group: str, created: CreatedRbac | None = None
) -> list[str]:
    """Create (or update) each principal's access entry; the ones created are added to ``created``."""
    done = []
    for principal in principals:
        try:
            try:
                eks.create_access_entry(clusterName=cluster.name, principalArn=principal, kubernetesGroups=[group])
                if created is not None:
                    created.accessEntries.append(principal)
            except botocore.exceptions.ClientError as exc:
                if error_code(exc) != "ResourceInUseException":
                    raise
                eks.update_access_entry(clusterName=cluster.name, principalArn=principal, kubernetesGroups=[group])
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise_transient(exc, "access entry")
            raise RbacBootstrapFailed(f"cluster {cluster.name}: access entry for {principal}: {exc}") from None
        done.append(principal)
    return done


def _token(cluster: ClusterView, config: WorkflowConfig) -> str:
    return str(get_token(cluster.id or cluster.name, endpoint_url=config.token_sts_endpoint_url).token)


def bootstrap(cluster: ClusterView, *, config: WorkflowConfig, eks: Any, token: str | None = None) -> BootstrapResult:
    token = token or _token(cluster, config)
    try:
        objects = rbac.lifeline_objects(
            config.breakglass_group,
            agents_group=config.agent_group,
            breakglass_cluster_role=config.breakglass_cluster_role,
            operators_group=config.operators_group,
            operators_cluster_role=config.operators_cluster_role,
        )
    except rbac.RbacError as exc:
        raise RbacBootstrapFailed(str(exc)) from None
    principals = config.agent_principal_arns
    uses_api = cluster.authenticationMode in ("API", "API_AND_CONFIG_MAP")
    created = CreatedRbac()
    entries: list[str] = []
    with session_for(cluster, token) as session:
        try:
            created.objects = absent_objects(session, objects)
            applied = rbac.apply_objects(session, objects)
            if principals and not uses_api:
                created.awsAuthCreated, created.awsAuthPrincipals = aws_auth_additions(session, principals)
                rbac.apply_aws_auth(session, list(principals), config.agent_group)
            if principals and uses_api:
                entries = map_with_access_entries(eks, cluster, principals, config.agent_group, created)
        except Exception as exc:
            failure = _api_failure(exc, cluster)
            if not created.empty:
                rollback(session, eks, cluster, created, because=f"{type(failure).__name__}: {failure}")
            raise failure from None
    mapping = "none" if not principals else "access-entries" if uses_api else "aws-auth"
    return BootstrapResult(applied, mapping, len(principals), entries, created)


def undo(cluster: ClusterView, created: CreatedRbac, *, config: WorkflowConfig, eks: Any, because: str,
         token: str | None = None) -> list[str]:
    """RollbackRbac: remove what a BootstrapRbac invocation created (``created``), after a later step failed."""
    if created.empty:
        return []
    with session_for(cluster, token or _token(cluster, config)) as session:
        return rollback(session, eks, cluster, created, because=because)
