"""The stack's parameters, read once from CDK context (`cdk.json` or `-c key=value`) into a typed object.

Every key is documented in docs/cloud.md. Bad values raise ``SettingsError`` at synth time, naming the key.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from constructs import Node
from lifeline_agent.contract import (
    AGENTS_GROUP,
    DEFAULT_BREAKGLASS_GROUP,
    DEFAULT_OPERATORS_GROUP,
    GROUP_PATTERN,
    OUTPOST_ARN_PATTERN,
)

CONTEXT_PREFIX = "lifeline:"
DEFAULT_POLL_INTERVAL_SECONDS = 60
DEFAULT_MAX_WAIT_SECONDS = 45 * 60
MAX_WAIT_LIMIT_SECONDS = 24 * 60 * 60
DEFAULT_READINESS_GRACE_SECONDS = 30 * 60
MAX_READINESS_GRACE_SECONDS = 24 * 60 * 60

_PRINCIPAL_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:(role|user)/[\w+=,.@/-]+$")
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")
_SUBNET_ID = re.compile(r"^subnet-[0-9a-f]{8,17}$")
_SECURITY_GROUP_ID = re.compile(r"^sg-[0-9a-f]{8,17}$")
_VPC_ID = re.compile(r"^vpc-[0-9a-f]{8,17}$")
_CLUSTER_NAME_PATTERN = re.compile(r"^(\*|[0-9A-Za-z][A-Za-z0-9_*-]{0,99})$")
_TOPIC_ARN = re.compile(r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[\w-]+$")
_CLUSTER_ROLE_NAME = re.compile(r"^[a-z0-9:._-]{1,253}$")


class SettingsError(ValueError):
    """A CDK context value is missing or malformed."""


@dataclass(frozen=True)
class LifelineSettings:
    agent_principal_arns: tuple[str, ...] = ()
    breakglass_group: str = DEFAULT_BREAKGLASS_GROUP
    breakglass_cluster_role: str = "cluster-admin"
    agent_group: str = AGENTS_GROUP
    operators_group: str = DEFAULT_OPERATORS_GROUP
    operators_cluster_role: str = "cluster-admin"
    allowed_outpost_arns: tuple[str, ...] = ()
    cluster_name_pattern: str = "*"
    cluster_role_arns: tuple[str, ...] = ()
    vpc_id: str | None = None
    subnet_ids: tuple[str, ...] = ()
    availability_zones: tuple[str, ...] = ()
    security_group_ids: tuple[str, ...] = ()
    poll_interval_seconds: int = DEFAULT_POLL_INTERVAL_SECONDS
    max_wait_seconds: int = DEFAULT_MAX_WAIT_SECONDS
    create_trail: bool = False
    alarm_topic_arn: str | None = None
    dependencies_layer: bool = False
    readiness_grace_seconds: int = DEFAULT_READINESS_GRACE_SECONDS

    @property
    def in_vpc(self) -> bool:
        return self.vpc_id is not None

    @property
    def state_machine_timeout_seconds(self) -> int:
        """The hard stop for one execution: the longest allowed waits plus room for the other steps."""
        return MAX_WAIT_LIMIT_SECONDS + self.readiness_grace_seconds + 30 * 60


def _get(node: Node, key: str) -> Any:
    return node.try_get_context(CONTEXT_PREFIX + key)


def _as_list(node: Node, key: str, pattern: re.Pattern[str]) -> tuple[str, ...]:
    raw = _get(node, key)
    if raw is None:
        return ()
    if isinstance(raw, str):
        raw = json.loads(raw) if raw.startswith("[") else [item for item in raw.split(",") if item]
    if not isinstance(raw, list) or not all(isinstance(item, str) for item in raw):
        raise SettingsError(f"context {CONTEXT_PREFIX}{key} must be a list of strings")
    for item in raw:
        if not pattern.match(item):
            raise SettingsError(f"context {CONTEXT_PREFIX}{key}: {item!r} is not valid")
    return tuple(raw)


def _as_str(node: Node, key: str, pattern: re.Pattern[str], default: str | None) -> str | None:
    raw = _get(node, key)
    if raw is None:
        return default
    if not isinstance(raw, str) or not pattern.match(raw):
        raise SettingsError(f"context {CONTEXT_PREFIX}{key}: {raw!r} is not valid")
    return raw


def _as_group(node: Node, key: str, default: str) -> str:
    value = _as_str(node, key, GROUP_PATTERN, default) or default
    if value.startswith("system:"):
        raise SettingsError(f"context {CONTEXT_PREFIX}{key}: system: groups cannot be revoked by RBAC")
    return value


def _as_int(node: Node, key: str, default: int, low: int, high: int) -> int:
    raw = _get(node, key)
    if raw is None:
        return default
    try:
        value = int(raw)
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"context {CONTEXT_PREFIX}{key} must be an integer") from exc
    if not low <= value <= high:
        raise SettingsError(f"context {CONTEXT_PREFIX}{key} must be between {low} and {high}")
    return value


def _as_bool(node: Node, key: str) -> bool:
    raw = _get(node, key)
    if raw is None:
        return False
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    raise SettingsError(f"context {CONTEXT_PREFIX}{key} must be true or false")


def load_settings(node: Node) -> LifelineSettings:
    """Read and validate every ``lifeline:*`` context key."""
    vpc_id = _as_str(node, "vpcId", _VPC_ID, None)
    subnet_ids = _as_list(node, "subnetIds", _SUBNET_ID)
    security_group_ids = _as_list(node, "securityGroupIds", _SECURITY_GROUP_ID)
    availability_zones = _as_list(node, "availabilityZones", re.compile(r"^[a-z0-9-]+$"))
    if vpc_id and not (subnet_ids and security_group_ids):
        raise SettingsError("context lifeline:vpcId needs lifeline:subnetIds and lifeline:securityGroupIds")
    if (subnet_ids or security_group_ids) and not vpc_id:
        raise SettingsError("context lifeline:subnetIds/securityGroupIds need lifeline:vpcId")
    poll = _as_int(node, "pollIntervalSeconds", DEFAULT_POLL_INTERVAL_SECONDS, 1, 3600)
    max_wait = _as_int(node, "maxWaitSeconds", DEFAULT_MAX_WAIT_SECONDS, 1, MAX_WAIT_LIMIT_SECONDS)
    groups = {key: _as_group(node, key, default) for key, default in (
        ("breakglassGroup", DEFAULT_BREAKGLASS_GROUP), ("agentGroup", AGENTS_GROUP),
        ("operatorsGroup", DEFAULT_OPERATORS_GROUP))}  # fmt: skip
    if len(set(groups.values())) != len(groups):
        raise SettingsError("context lifeline:breakglassGroup, lifeline:agentGroup and lifeline:operatorsGroup "
                            f"must be three different groups, not {sorted(groups.values())}")  # fmt: skip
    return LifelineSettings(
        agent_principal_arns=_as_list(node, "agentPrincipalArns", _PRINCIPAL_ARN),
        breakglass_group=groups["breakglassGroup"],
        breakglass_cluster_role=_as_str(node, "breakglassClusterRole", _CLUSTER_ROLE_NAME, "cluster-admin") or "",
        agent_group=groups["agentGroup"],
        operators_group=groups["operatorsGroup"],
        operators_cluster_role=_as_str(node, "operatorsClusterRole", _CLUSTER_ROLE_NAME, "cluster-admin") or "",
        allowed_outpost_arns=_as_list(node, "allowedOutpostArns", OUTPOST_ARN_PATTERN),
        cluster_name_pattern=_as_str(node, "clusterNamePattern", _CLUSTER_NAME_PATTERN, "*") or "*",
        cluster_role_arns=_as_list(node, "clusterRoleArns", _ROLE_ARN),
        vpc_id=vpc_id,
        subnet_ids=subnet_ids,
        availability_zones=availability_zones,
        security_group_ids=security_group_ids,
        poll_interval_seconds=poll,
        max_wait_seconds=max_wait,
        create_trail=_as_bool(node, "createTrail"),
        alarm_topic_arn=_as_str(node, "alarmTopicArn", _TOPIC_ARN, None),
        dependencies_layer=_as_bool(node, "dependenciesLayer"),
        readiness_grace_seconds=_as_int(node, "readinessGraceSeconds", DEFAULT_READINESS_GRACE_SECONDS, 0,
                                        MAX_READINESS_GRACE_SECONDS),
    )
