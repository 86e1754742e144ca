"""cdk-nag AwsSolutions checks, and the findings we accept, each with its reason."""

from __future__ import annotations

from aws_cdk import Aspects
from cdk_nag import AwsSolutionsChecks, NagPackSuppression, NagSuppressions
from constructs import IConstruct

from cdk.stack import LifelineStack


def apply_checks(scope: IConstruct) -> None:
    Aspects.of(scope).add(AwsSolutionsChecks(verbose=True))


def suppress_justified_findings(stack: LifelineStack) -> None:
    """Suppressions are attached to the exact resources; none applies stack-wide."""
    xray = NagPackSuppression(
        id="AwsSolutions-IAM5",
        reason="X-Ray PutTraceSegments/PutTelemetryRecords do not support resource-level permissions",
        applies_to=["Resource::*"],
    )
    for role in {id(f.role): f.role for f in stack.functions.all}.values():
        NagSuppressions.add_resource_suppressions(role, [xray], apply_to_children=True)  # type: ignore[arg-type]
    NagSuppressions.add_resource_suppressions(
        stack.functions.cluster_admin_role,
        [
            NagPackSuppression(
                id="AwsSolutions-IAM5",
                reason="Access entries are named by the principal's generated id "
                "(access-entry/<cluster>/<type>/<account>/<uuid>), unknown before the entry exists",
                applies_to=[{"regex": "/^Resource::arn:<AWS::Partition>:eks:.*:access-entry/.*\\*$/g"}],
            ),
            NagPackSuppression(
                id="AwsSolutions-IAM5",
                reason="Lambda VPC networking: ec2:*NetworkInterface* actions do not support resource-level "
                "permissions for Describe and are what AWSLambdaVPCAccessExecutionRole grants",
                applies_to=["Resource::*"],
            ),
        ],
        apply_to_children=True,
    )
    if stack.settings.cluster_name_pattern.endswith("*"):
        NagSuppressions.add_resource_suppressions(
            [stack.functions.cluster_admin_role, stack.functions.check_cluster.role],  # type: ignore[list-item]
            [
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="Clusters are created at any time under names matching lifeline:clusterNamePattern; "
                    "set the context key to narrow this",
                    applies_to=[{"regex": "/^Resource::arn:<AWS::Partition>:eks:.*:cluster/.*\\*$/g"}],
                ),
            ],
            apply_to_children=True,
        )
    NagSuppressions.add_resource_suppressions(
        stack.functions.store_secret.role,  # type: ignore[arg-type]
        [
            NagPackSuppression(
                id="AwsSolutions-IAM5",
                reason="One secret per cluster, lifeline/<cluster>, created by the workflow at run time; "
                "scoped to the lifeline/ prefix",
                applies_to=[{"regex": "/^Resource::arn:<AWS::Partition>:secretsmanager:.*:secret:lifeline/\\*$/g"}],
            ),
        ],
        apply_to_children=True,
    )
    NagSuppressions.add_resource_suppressions(
        stack.functions.watch_readiness.role,  # type: ignore[arg-type]
        [
            NagPackSuppression(
                id="AwsSolutions-IAM5",
                reason="One readiness alarm per cluster, lifeline-readiness-<cluster>, made by the workflow at run "
                "time; scoped to that prefix",
                applies_to=[{"regex": "/^Resource::arn:<AWS::Partition>:cloudwatch:.*:alarm:"
                             "lifeline-readiness-\\*$/g"}],
            ),
        ],
        apply_to_children=True,
    )
    NagSuppressions.add_resource_suppressions(
        stack.workflow.state_machine.role,
        [
            NagPackSuppression(
                id="AwsSolutions-IAM5",
                reason="CloudWatch Logs delivery and X-Ray actions for Step Functions do not support "
                "resource-level permissions",
                applies_to=["Resource::*"],
            ),
            NagPackSuppression(
                id="AwsSolutions-IAM5",
                reason="lambda:InvokeFunction on <function ARN>:* covers the function's versions and aliases "
                "(CDK grant); the functions themselves are named",
                applies_to=[{"regex": "/^Resource::<Functions[A-Za-z]+[0-9A-F]{8}\\.Arn>:\\*$/g"}],
            ),
        ],
        apply_to_children=True,
    )
    for function in stack.functions.all:
        NagSuppressions.add_resource_suppressions(function, [NagPackSuppression(
            id="AwsSolutions-L1",
            reason="python3.11 (Lambda deprecation 2027-06-30): the newest runtime whose package make test can "
            "build and import here (docs/cloud.md, 'The Lambda package'); move on with the machines' Python",
        )])  # fmt: skip
    NagSuppressions.add_resource_suppressions(
        stack.trigger.dead_letter_queue,
        [NagPackSuppression(id="AwsSolutions-SQS3", reason="This queue is itself the trigger's dead-letter queue")],
    )
    if stack.trigger.trail is not None:
        NagSuppressions.add_resource_suppressions(
            stack.trigger.trail,
            [
                NagPackSuppression(
                    id="AwsSolutions-S1",
                    reason="The trail's own bucket: logging its access would need another bucket per stack; "
                    "CloudTrail log file validation is on",
                ),
            ],
            apply_to_children=True,
        )
