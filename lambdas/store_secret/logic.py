"""StoreSecret: build the contract secret ``lifeline/<cluster>`` from the cluster and write it with the CMK.

Idempotent: the secret is created, or a new version is put only when its content (all but ``updatedAt``)
differs from the current one. The contract code is the agent's (``lifeline_agent.contract``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import botocore.exceptions
from lifeline_agent.contract import ClusterSecret, ContractError

from lambdas import constants
from lambdas.aws import error_code, raise_transient
from lambdas.errors import InvalidClusterData, SecretWriteFailed
from lambdas.models import ClusterView

VOLATILE_FIELDS = frozenset({"updatedAt"})
# Every action that changes what the agents read, or who may read or change it.
WRITER_ONLY_ACTIONS = (
    "secretsmanager:PutSecretValue",
    "secretsmanager:UpdateSecret",
    "secretsmanager:PutResourcePolicy",
    "secretsmanager:DeleteResourcePolicy",
    "secretsmanager:UpdateSecretVersionStage",
    "secretsmanager:RotateSecret",
)


@dataclass(frozen=True)
class StoredSecret:
    secretName: str
    secretArn: str
    versionId: str
    changed: bool
    caSha256: str

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def build_secret(cluster: ClusterView, *, breakglass_group: str, updated_at: str = "") -> ClusterSecret:
    try:
        return ClusterSecret(
            cluster_name=cluster.name,
            cluster_arn=cluster.arn,
            cluster_id=cluster.id or None,
            endpoint=cluster.endpoint,
            certificate_authority_data=cluster.certificateAuthorityData,
            kubernetes_version=cluster.version,
            platform_version=cluster.platformVersion,
            outpost_arns=tuple(cluster.outpostArns),
            breakglass_group=breakglass_group,
            updated_at=updated_at,
        )
    except ContractError as exc:
        raise InvalidClusterData(f"cluster {cluster.name}: {exc}") from None


def _content(secret: ClusterSecret) -> dict[str, Any]:
    return {k: v for k, v in secret.to_dict().items() if k not in VOLATILE_FIELDS}


def _current(secrets: Any, name: str) -> tuple[ClusterSecret | None, dict[str, Any]]:
    response = secrets.get_secret_value(SecretId=name)
    try:
        return ClusterSecret.from_json(response.get("SecretString") or ""), response
    except ContractError:
        return None, response  # unreadable: replace it with a valid version


def reader_policy(readers: tuple[str, ...], writer: str) -> dict[str, Any]:
    """The secret's resource policy: the agents may read it, every other principal but the writer is denied
    reading it, and only the writer may change its value or this policy (recovery: docs/cloud.md)."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "LifelineAgentsRead",
                "Effect": "Allow",
                "Principal": {"AWS": list(readers)},
                "Action": ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
                "Resource": "*",
            },
            {
                "Sid": "NobodyElseReads",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "secretsmanager:GetSecretValue",
                "Resource": "*",
                "Condition": {"ArnNotEquals": {"aws:PrincipalArn": [*readers, writer]}},
            },
            {
                "Sid": "OnlyTheWorkflowWrites",
                "Effect": "Deny",
                "Principal": "*",
                "Action": list(WRITER_ONLY_ACTIONS),
                "Resource": "*",
                "Condition": {"ArnNotEquals": {"aws:PrincipalArn": writer}},
            },
        ],
    }


def store_secret(
    secrets: Any,
    secret: ClusterSecret,
    *,
    kms_key_id: str | None,
    readers: tuple[str, ...] = (),
    writer: str | None = None,
) -> StoredSecret:
    """Write the secret (create, or a new version when it changed); with ``readers`` and ``writer``, also
    (re)apply the resource policy that lets only them read it."""
    stored = _write(secrets, secret, kms_key_id=kms_key_id)
    if readers and writer:
        policy = json.dumps(reader_policy(readers, writer), sort_keys=True)
        try:
            secrets.put_resource_policy(SecretId=stored.secretName, ResourcePolicy=policy, BlockPublicPolicy=True)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise_transient(exc, f"resource policy of {stored.secretName}")
            raise _refused(exc, f"resource policy of {stored.secretName}") from None
    return stored


def _refused(exc: Exception, what: str) -> SecretWriteFailed:
    if isinstance(exc, botocore.exceptions.ClientError):
        message = str(exc.response.get("Error", {}).get("Message", ""))[:300]
        return SecretWriteFailed(f"{what}: {error_code(exc)}: {message}")
    return SecretWriteFailed(f"{what}: {type(exc).__name__}: {exc}")


def _write(secrets: Any, secret: ClusterSecret, *, kms_key_id: str | None) -> StoredSecret:
    name = secret.secret_name
    try:
        try:
            extra: dict[str, Any] = {"KmsKeyId": kms_key_id} if kms_key_id else {}
            created = secrets.create_secret(
                Name=name,
                Description=f"Lifeline offline access: CA and endpoint of EKS local cluster {secret.cluster_name}",
                SecretString=secret.to_json(),
                Tags=[
                    {"Key": constants.TAG_CLUSTER, "Value": secret.cluster_name},
                    {"Key": constants.TAG_MANAGED_BY, "Value": constants.MANAGED_BY_VALUE},
                ],
                **extra,
            )
            return StoredSecret(name, created["ARN"], created.get("VersionId", ""), True, secret.ca_sha256)
        except botocore.exceptions.ClientError as exc:
            if error_code(exc) != "ResourceExistsException":
                raise
        current, response = _current(secrets, name)
        if current is not None and _content(current) == _content(secret):
            return StoredSecret(name, response["ARN"], response.get("VersionId", ""), False, secret.ca_sha256)
        put = secrets.put_secret_value(SecretId=name, SecretString=secret.to_json())
        return StoredSecret(name, put["ARN"], put.get("VersionId", ""), True, secret.ca_sha256)
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
        raise_transient(exc, f"writing secret {name}")
        raise _refused(exc, f"writing secret {name}") from None
