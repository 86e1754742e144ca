"""The workflow's Lambda functions: one role per concern, one log group each (encrypted with the stack's key),
code from the staged asset."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from aws_cdk import ArnFormat, Duration, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct
from lifeline_agent.contract import READINESS_ALARM_PREFIX

from cdk.settings import MAX_WAIT_LIMIT_SECONDS, LifelineSettings, SettingsError
from lambdas import constants

# The newest Python runtime the project's machines can import the package with (make test builds the layer
# for this runtime and imports every handler from it): docs/cloud.md, "The Lambda package".
RUNTIME = lambda_.Runtime.PYTHON_3_11
ARCHITECTURE = lambda_.Architecture.X86_64
COMMON_ENVIRONMENT = {
    "POWERTOOLS_SERVICE_NAME": "lifeline",
    "POWERTOOLS_METRICS_NAMESPACE": "Lifeline",
    "POWERTOOLS_LOG_LEVEL": "INFO",
}


@dataclass(frozen=True)
class FunctionCode:
    code_directory: Path
    layer_directory: Path | None


class WorkflowFunctions(Construct):
    """normalise_request, create_cluster, check_cluster, bootstrap_rbac, store_secret, rollback_rbac,
    watch_readiness."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: LifelineSettings,
        code: FunctionCode,
        secrets_key: kms.IKey,
        secret_arn_pattern: str,
    ) -> None:
        super().__init__(scope, construct_id)
        self._settings = settings
        self._log_key = secrets_key
        self._placement: dict[str, object] | None = None
        self._code = lambda_.Code.from_asset(str(code.code_directory))
        self._layers = (
            [lambda_.LayerVersion(self, "Dependencies", code=lambda_.Code.from_asset(str(code.layer_directory)),
                                  compatible_runtimes=[RUNTIME], compatible_architectures=[ARCHITECTURE],
                                  description="Lifeline Lambda dependencies")]
            if code.layer_directory
            else []
        )
        stack = Stack.of(self)
        self.cluster_arn_pattern = stack.format_arn(
            service="eks", resource="cluster", resource_name=settings.cluster_name_pattern,
            arn_format=ArnFormat.SLASH_RESOURCE_NAME,
        )
        access_entry_arn_pattern = stack.format_arn(
            service="eks", resource="access-entry", resource_name=f"{settings.cluster_name_pattern}/*",
            arn_format=ArnFormat.SLASH_RESOURCE_NAME,
        )
        allowed_outposts = json.dumps(list(settings.allowed_outpost_arns))

        self.normalise_request = self._function(
            "normalise_request",
            role=self._role("NormaliseRequestRole"),
            environment={
                constants.ENV_ALLOWED_OUTPOST_ARNS: allowed_outposts,
                constants.ENV_POLL_INTERVAL_SECONDS: str(settings.poll_interval_seconds),
                constants.ENV_MAX_WAIT_SECONDS: str(settings.max_wait_seconds),
                constants.ENV_MAX_WAIT_LIMIT_SECONDS: str(MAX_WAIT_LIMIT_SECONDS),
                constants.ENV_STACK_ACCOUNT: stack.account,
                constants.ENV_STACK_REGION: stack.region,
            },
        )

        check_role = self._role("CheckClusterRole")
        check_role.add_to_policy(
            iam.PolicyStatement(actions=["eks:DescribeCluster"], resources=[self.cluster_arn_pattern])
        )
        self.check_cluster = self._function(
            "check_cluster", role=check_role, environment={constants.ENV_ALLOWED_OUTPOST_ARNS: allowed_outposts}
        )

        store_role = self._role("StoreSecretRole")
        store_role.add_to_policy(
            iam.PolicyStatement(
                actions=[
                    "secretsmanager:CreateSecret",
                    "secretsmanager:DescribeSecret",
                    "secretsmanager:GetSecretValue",
                    "secretsmanager:PutResourcePolicy",
                    "secretsmanager:PutSecretValue",
                    "secretsmanager:TagResource",
                ],
                resources=[secret_arn_pattern],
            )
        )
        store_role.add_to_policy(
            iam.PolicyStatement(
                actions=["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"], resources=[secrets_key.key_arn]
            )
        )
        self.store_secret = self._function(
            "store_secret",
            role=store_role,
            environment={
                constants.ENV_SECRET_KMS_KEY_ID: secrets_key.key_arn,
                constants.ENV_BREAKGLASS_GROUP: settings.breakglass_group,
                constants.ENV_AGENT_PRINCIPAL_ARNS: json.dumps(list(settings.agent_principal_arns)),
                constants.ENV_SECRET_WRITER_ARN: store_role.role_arn,
            },
        )

        # One principal creates clusters and bootstraps their RBAC: the creator of a CONFIG_MAP local cluster
        # is its only admin until aws-auth is written.
        self.cluster_admin_role = self._role("ClusterAdminRole")
        self.cluster_admin_role.add_to_policy(
            iam.PolicyStatement(
                actions=["eks:CreateCluster", "eks:TagResource", "eks:CreateAccessEntry",
                         "eks:DescribeAccessEntry", "eks:UpdateAccessEntry", "eks:DeleteAccessEntry"],
                resources=[self.cluster_arn_pattern, access_entry_arn_pattern],
            )
        )
        if settings.cluster_role_arns:
            self.cluster_admin_role.add_to_policy(
                iam.PolicyStatement(
                    actions=["iam:PassRole"],
                    resources=list(settings.cluster_role_arns),
                    conditions={"StringEquals": {"iam:PassedToService": "eks.amazonaws.com"}},
                )
            )
        self.create_cluster = self._function(
            "create_cluster", role=self.cluster_admin_role, timeout_seconds=60
        )
        rbac_environment = {
            constants.ENV_BREAKGLASS_GROUP: settings.breakglass_group,
            constants.ENV_BREAKGLASS_CLUSTER_ROLE: settings.breakglass_cluster_role,
            constants.ENV_AGENT_GROUP: settings.agent_group,
            constants.ENV_OPERATORS_GROUP: settings.operators_group,
            constants.ENV_OPERATORS_CLUSTER_ROLE: settings.operators_cluster_role,
            constants.ENV_AGENT_PRINCIPAL_ARNS: json.dumps(list(settings.agent_principal_arns)),
        }
        self.bootstrap_rbac = self._function(
            "bootstrap_rbac", role=self.cluster_admin_role, timeout_seconds=120, memory_size=512,
            in_vpc=settings.in_vpc, environment=rbac_environment,
        )
        # Undoes what BootstrapRbac created when StoreSecret, the step after it, fails.
        self.rollback_rbac = self._function(
            "rollback_rbac", role=self.cluster_admin_role, timeout_seconds=120, memory_size=512,
            in_vpc=settings.in_vpc, environment=rbac_environment,
        )

        # One alarm per cluster, lifeline-readiness-<cluster>, made after the agents' grace period.
        self.readiness_alarm_arn_pattern = stack.format_arn(
            service="cloudwatch", resource="alarm", resource_name=f"{READINESS_ALARM_PREFIX}*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        watch_role = self._role("WatchReadinessRole")
        watch_role.add_to_policy(
            iam.PolicyStatement(actions=["cloudwatch:PutMetricAlarm"], resources=[self.readiness_alarm_arn_pattern])
        )
        self.watch_readiness = self._function(
            "watch_readiness", role=watch_role,
            environment={constants.ENV_ALARM_TOPIC_ARN: settings.alarm_topic_arn} if settings.alarm_topic_arn else {},
        )

    @property
    def all(self) -> list[lambda_.Function]:
        return [self.normalise_request, self.create_cluster, self.check_cluster, self.bootstrap_rbac,
                self.store_secret, self.rollback_rbac, self.watch_readiness]

    def _role(self, construct_id: str) -> iam.Role:
        return iam.Role(self, construct_id, assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))

    def _vpc_placement(self) -> dict[str, object]:
        """The VPC, subnets and security groups of the functions that reach the clusters (made once)."""
        if self._placement is None:
            self._placement = self._import_vpc()
        return self._placement

    def _import_vpc(self) -> dict[str, object]:
        settings = self._settings
        if settings.vpc_id is None:
            raise SettingsError("VPC placement needs lifeline:vpcId")
        vpc = ec2.Vpc.from_vpc_attributes(
            self,
            "Vpc",
            vpc_id=settings.vpc_id,
            availability_zones=list(settings.availability_zones) or Stack.of(self).availability_zones,
        )
        subnets = [ec2.Subnet.from_subnet_id(self, f"Subnet{i}", s) for i, s in enumerate(settings.subnet_ids)]
        groups = [
            ec2.SecurityGroup.from_security_group_id(self, f"SecurityGroup{i}", g)
            for i, g in enumerate(settings.security_group_ids)
        ]
        return {"vpc": vpc, "vpc_subnets": ec2.SubnetSelection(subnets=subnets), "security_groups": groups}

    def _function(
        self,
        name: str,
        *,
        role: iam.Role,
        environment: dict[str, str] | None = None,
        timeout_seconds: int = 30,
        memory_size: int = 256,
        in_vpc: bool = False,
    ) -> lambda_.Function:
        construct_id = "".join(part.title() for part in name.split("_"))
        log_group = logs.LogGroup(
            self, f"{construct_id}Logs", retention=logs.RetentionDays.THREE_MONTHS,
            removal_policy=RemovalPolicy.DESTROY, encryption_key=self._log_key,
        )
        log_group.grant_write(role)
        placement = self._vpc_placement() if in_vpc else {}
        if in_vpc:
            role.add_to_policy(
                iam.PolicyStatement(
                    actions=["ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces",
                             "ec2:DeleteNetworkInterface", "ec2:AssignPrivateIpAddresses",
                             "ec2:UnassignPrivateIpAddresses"],
                    resources=["*"],
                )
            )
        return lambda_.Function(
            self,
            construct_id,
            description=f"Lifeline workflow step: {name}",
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            code=self._code,
            handler=f"lambdas.{name}.handler.handler",
            role=role,
            environment={**COMMON_ENVIRONMENT, **(environment or {})},
            timeout=Duration.seconds(timeout_seconds),
            memory_size=memory_size,
            tracing=lambda_.Tracing.ACTIVE,
            log_group=log_group,
            layers=self._layers,
            **placement,  # type: ignore[arg-type]
        )
