"""The functions' settings, read from the environment the stack gives each function."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from lifeline_agent.contract import AGENTS_GROUP, DEFAULT_BREAKGLASS_GROUP, DEFAULT_OPERATORS_GROUP

from lambdas import constants

DEFAULT_POLL_INTERVAL_SECONDS = 60
DEFAULT_MAX_WAIT_SECONDS = 45 * 60
DEFAULT_MAX_WAIT_LIMIT_SECONDS = 24 * 60 * 60


def _json_list(name: str) -> tuple[str, ...]:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return ()
    value = json.loads(raw)
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"environment variable {name} must be a JSON list of strings")
    return tuple(value)


@dataclass(frozen=True)
class WorkflowConfig:
    allowed_outpost_arns: tuple[str, ...] = ()
    poll_interval_seconds: int = DEFAULT_POLL_INTERVAL_SECONDS
    max_wait_seconds: int = DEFAULT_MAX_WAIT_SECONDS
    max_wait_limit_seconds: int = DEFAULT_MAX_WAIT_LIMIT_SECONDS
    secret_kms_key_id: str | None = None
    breakglass_group: str = DEFAULT_BREAKGLASS_GROUP
    breakglass_cluster_role: str = "cluster-admin"
    agent_group: str = AGENTS_GROUP
    operators_group: str = DEFAULT_OPERATORS_GROUP
    operators_cluster_role: str = "cluster-admin"
    agent_principal_arns: tuple[str, ...] = ()
    secret_writer_arn: str | None = None
    token_sts_endpoint_url: str | None = None  # lab-only, unset on AWS (constants.ENV_TOKEN_STS_ENDPOINT_URL)
    stack_account: str | None = None
    stack_region: str | None = None
    alarm_topic_arn: str | None = None

    @classmethod
    def from_environment(cls) -> WorkflowConfig:
        env = os.environ
        return cls(
            allowed_outpost_arns=_json_list(constants.ENV_ALLOWED_OUTPOST_ARNS),
            poll_interval_seconds=int(env.get(constants.ENV_POLL_INTERVAL_SECONDS, DEFAULT_POLL_INTERVAL_SECONDS)),
            max_wait_seconds=int(env.get(constants.ENV_MAX_WAIT_SECONDS, DEFAULT_MAX_WAIT_SECONDS)),
            max_wait_limit_seconds=int(env.get(constants.ENV_MAX_WAIT_LIMIT_SECONDS, DEFAULT_MAX_WAIT_LIMIT_SECONDS)),
            secret_kms_key_id=env.get(constants.ENV_SECRET_KMS_KEY_ID) or None,
            breakglass_group=env.get(constants.ENV_BREAKGLASS_GROUP) or DEFAULT_BREAKGLASS_GROUP,
            breakglass_cluster_role=env.get(constants.ENV_BREAKGLASS_CLUSTER_ROLE) or "cluster-admin",
            agent_group=env.get(constants.ENV_AGENT_GROUP) or AGENTS_GROUP,
            operators_group=env.get(constants.ENV_OPERATORS_GROUP) or DEFAULT_OPERATORS_GROUP,
            operators_cluster_role=env.get(constants.ENV_OPERATORS_CLUSTER_ROLE) or "cluster-admin",
            agent_principal_arns=_json_list(constants.ENV_AGENT_PRINCIPAL_ARNS),
            secret_writer_arn=env.get(constants.ENV_SECRET_WRITER_ARN) or None,
            token_sts_endpoint_url=env.get(constants.ENV_TOKEN_STS_ENDPOINT_URL) or None,
            stack_account=env.get(constants.ENV_STACK_ACCOUNT) or None,
            stack_region=env.get(constants.ENV_STACK_REGION) or None,
            alarm_topic_arn=env.get(constants.ENV_ALARM_TOPIC_ARN) or None,
        )
