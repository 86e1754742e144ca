"""Storage: the customer managed KMS key that encrypts every `lifeline/<cluster>` secret and the workflow's logs."""

from __future__ import annotations

from aws_cdk import ArnFormat, Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct
from lifeline_agent.contract import SECRET_PREFIX


class Storage(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, agent_principal_arns: tuple[str, ...]) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.key = kms.Key(
            self,
            "SecretsKey",
            description="Encrypts the Lifeline cluster secrets (lifeline/<cluster>) and the workflow's log groups",
            enable_key_rotation=True,
            pending_window=Duration.days(30),
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.secret_arn_pattern = stack.format_arn(
            service="secretsmanager", resource="secret", resource_name=f"{SECRET_PREFIX}*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchLogsEncryptLifelineLogs",
                principals=[iam.ServicePrincipal(f"logs.{stack.region}.amazonaws.com")],
                actions=["kms:Encrypt", "kms:Decrypt", "kms:ReEncryptFrom", "kms:ReEncryptTo",
                         "kms:GenerateDataKey", "kms:GenerateDataKeyWithoutPlaintext", "kms:DescribeKey"],
                resources=["*"],
                conditions={
                    "ArnLike": {
                        "kms:EncryptionContext:aws:logs:arn": stack.format_arn(
                            service="logs", resource="log-group", resource_name="*",
                            arn_format=ArnFormat.COLON_RESOURCE_NAME,
                        )
                    }
                },
            )
        )
        if agent_principal_arns:
            self.key.add_to_resource_policy(
                iam.PolicyStatement(
                    sid="AgentsDecryptLifelineSecrets",
                    principals=[iam.ArnPrincipal(arn) for arn in agent_principal_arns],
                    actions=["kms:Decrypt"],
                    resources=["*"],  # in a key policy, "*" means this key
                    conditions={
                        "StringEquals": {"kms:ViaService": f"secretsmanager.{stack.region}.amazonaws.com"},
                    },
                )
            )

