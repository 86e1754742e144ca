"""The Lifeline Region stack: storage, workflow (functions + state machine), trigger, monitoring.

The accepted findings of the scanners (cdk/nag.py, cdk/checkov.py) are attached by cdk/application.py,
which knows both the stack and the scanners; this module knows neither.
"""

from __future__ import annotations

from aws_cdk import CfnOutput, Duration, Stack
from aws_cdk import aws_iam as iam
from constructs import Construct
from lifeline_agent.contract import READINESS_NAMESPACE

from cdk.assets import build_dependencies_layer, stage_lambda_code
from cdk.constructs.functions import FunctionCode, WorkflowFunctions
from cdk.constructs.monitoring import Monitoring
from cdk.constructs.readiness import ReadinessDashboard
from cdk.constructs.storage import Storage
from cdk.constructs.trigger import Trigger
from cdk.constructs.workflow import Workflow
from cdk.settings import load_settings


class LifelineStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, **kwargs: object) -> None:
        super().__init__(scope, construct_id, **kwargs)  # type: ignore[arg-type]
        self.settings = settings = load_settings(self.node)
        code = FunctionCode(
            code_directory=stage_lambda_code(),
            layer_directory=build_dependencies_layer() if settings.dependencies_layer else None,
        )
        self.storage = Storage(self, "Storage", agent_principal_arns=settings.agent_principal_arns)
        self.functions = WorkflowFunctions(
            self,
            "Functions",
            settings=settings,
            code=code,
            secrets_key=self.storage.key,
            secret_arn_pattern=self.storage.secret_arn_pattern,
        )
        self.workflow = Workflow(
            self,
            "Workflow",
            normalise_request=self.functions.normalise_request,
            create_cluster=self.functions.create_cluster,
            check_cluster=self.functions.check_cluster,
            store_secret=self.functions.store_secret,
            bootstrap_rbac=self.functions.bootstrap_rbac,
            rollback_rbac=self.functions.rollback_rbac,
            watch_readiness=self.functions.watch_readiness,
            readiness_grace=Duration.seconds(settings.readiness_grace_seconds),
            timeout=Duration.seconds(settings.state_machine_timeout_seconds),
            log_key=self.storage.key,
        )
        self.trigger = Trigger(
            self,
            "Trigger",
            state_machine=self.workflow.state_machine,
            allowed_outpost_arns=settings.allowed_outpost_arns,
            create_trail=settings.create_trail,
        )
        self.monitoring = Monitoring(
            self,
            "Monitoring",
            state_machine=self.workflow.state_machine,
            dead_letter_queue=self.trigger.dead_letter_queue,
            alarm_topic_arn=settings.alarm_topic_arn,
        )
        self.readiness = ReadinessDashboard(self, "Readiness", workflow_alarms=self.monitoring.alarms)
        CfnOutput(self, "StateMachineArn", value=self.workflow.state_machine.state_machine_arn)
        CfnOutput(self, "SecretsKeyArn", value=self.storage.key.key_arn)
        CfnOutput(
            self,
            "ClusterAdminRoleArn",
            description="Creates clusters and bootstraps their RBAC: map it as admin in clusters created elsewhere",
            value=self.functions.cluster_admin_role.role_arn,
        )
        CfnOutput(self, "DeadLetterQueueUrl", value=self.trigger.dead_letter_queue.queue_url)
        CfnOutput(
            self,
            "SecretWriterRoleArn",
            description="The only principal the secrets' resource policies let change a secret or its policy",
            value=self.functions.store_secret.role.role_arn,  # type: ignore[union-attr]
        )
        CfnOutput(
            self,
            "AgentPolicyDocument",
            description="IAM policy for the agent principals: read their secrets, check each secret's "
            "endpoint and CA against EKS (eks:DescribeCluster), report readiness (CloudWatch, Lifeline namespace)",
            value=self.to_json_string(self.agent_policy().to_json()),
        )

    def agent_policy(self) -> iam.PolicyDocument:
        """What an agent principal needs: its IAM policy; the key and secret policies grant the rest."""
        return iam.PolicyDocument(
            statements=[
                iam.PolicyStatement(
                    sid="ReadLifelineSecrets",
                    actions=["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
                    resources=[self.storage.secret_arn_pattern],
                ),
                iam.PolicyStatement(
                    sid="DecryptLifelineSecrets",
                    actions=["kms:Decrypt"],
                    resources=[self.storage.key.key_arn],
                    conditions={"StringEquals": {"kms:ViaService": f"secretsmanager.{self.region}.amazonaws.com"}},
                ),
                iam.PolicyStatement(
                    sid="VerifySecretAgainstEks",
                    actions=["eks:DescribeCluster"],
                    resources=[self.functions.cluster_arn_pattern],
                ),
                # PutMetricData has no resource-level permissions: the namespace condition is what limits it.
                iam.PolicyStatement(
                    sid="ReportReadiness",
                    actions=["cloudwatch:PutMetricData"],
                    resources=["*"],
                    conditions={"StringEquals": {"cloudwatch:namespace": READINESS_NAMESPACE}},
                ),
            ]
        )
