"""checkov (a second scanner beside cdk-nag, run on the synthesized template by the tests): the findings we
accept, each with its reason, attached to the exact resources as ``Metadata.checkov.skip``."""

from __future__ import annotations

from aws_cdk import CfnResource
from constructs import IConstruct

from cdk.stack import LifelineStack

METADATA_KEY = "checkov"


class CheckovSkipError(ValueError):
    """A skip was asked for a construct that is not (and has no default child that is) a CloudFormation resource."""


def skip(construct: IConstruct, check_id: str, comment: str) -> None:
    """Record that ``check_id`` does not apply to ``construct``'s CloudFormation resource, and why."""
    resource = construct if isinstance(construct, CfnResource) else construct.node.default_child
    if not isinstance(resource, CfnResource):
        raise CheckovSkipError(f"{construct.node.path}: no CloudFormation resource to attach a checkov skip to")
    current = resource.get_metadata(METADATA_KEY) or {"skip": []}
    resource.add_metadata(METADATA_KEY, {"skip": [*current["skip"], {"id": check_id, "comment": comment}]})


def skip_accepted_findings(stack: LifelineStack) -> None:
    in_vpc = {id(stack.functions.bootstrap_rbac), id(stack.functions.rollback_rbac)} if stack.settings.in_vpc else set()
    for function in stack.functions.all:
        skip(function, "CKV_AWS_116", "Invoked synchronously by Step Functions, which retries and catches every "
             "error into the failure event; a dead-letter queue only serves asynchronous invocations")
        skip(function, "CKV_AWS_115", "One short invocation per workflow step; reserved concurrency would take "
             "from the account's unreserved pool, and a throttle is retried by the state machine")
        skip(function, "CKV_AWS_173", "The environment holds ARNs, group names and numbers, nothing secret; "
             "Lambda encrypts it at rest with its AWS managed key")
        if id(function) not in in_vpc:
            skip(function, "CKV_AWS_117", "Calls AWS APIs only, or (the RBAC functions without lifeline:vpcId) a "
                 "cluster endpoint that is reachable without a VPC; set lifeline:vpcId to place them in one")
    if stack.settings.in_vpc:
        skip(stack.functions.cluster_admin_role.node.find_child("DefaultPolicy"), "CKV_AWS_111",
             "Lambda VPC networking: ec2:*NetworkInterface* actions do not support resource-level permissions "
             "and are what AWSLambdaVPCAccessExecutionRole grants")
    if stack.trigger.trail is not None:
        trail = stack.trigger.trail
        skip(trail, "CKV_AWS_67", "Lifeline needs the CreateCluster calls of its own Region only; an organisation "
             "or multi-Region trail, if you have one, makes lifeline:createTrail unnecessary")
        skip(trail, "CKV_AWS_35", "The trail's objects are encrypted with S3 managed keys (SSE-S3); the stack's key "
             "is kept to the secrets and the workflow's logs")
        skip(trail.node.find_child("S3"), "CKV_AWS_18", "The trail's own bucket: logging its access would need "
             "another bucket per stack; CloudTrail log file validation is on")
    skip(stack.trigger.dead_letter_queue, "CKV_AWS_27", "Encrypted at rest with SQS managed SSE "
         "(SqsManagedSseEnabled), which this check does not recognise; EventBridge needs no key grant for it")
