"""Trigger: EventBridge rules that start the workflow.

1. CloudTrail ``CreateCluster`` events for clusters with an ``outpostConfig`` (optionally only the allowed
   Outposts). The pattern matches the leaf ``outpostConfig.outpostArns``: ``exists`` does not match an object.
2. Explicit provisioning requests: the custom event ``Lifeline Provision Request`` (direct
   ``StartExecution`` needs no rule).

Both targets retry and send what they cannot deliver to a dead-letter queue.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_cloudtrail as cloudtrail
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from lambdas import constants

TARGET_RETRY_ATTEMPTS = 8
TARGET_MAX_EVENT_AGE = Duration.hours(24)


def cloudtrail_detail_pattern(allowed_outpost_arns: tuple[str, ...]) -> dict[str, Any]:
    outpost_arns: list[Any] = list(allowed_outpost_arns) if allowed_outpost_arns else [{"exists": True}]
    return {
        "eventSource": [constants.CLOUDTRAIL_EVENT_SOURCE],
        "eventName": [constants.CREATE_CLUSTER_EVENT_NAME],
        "errorCode": [{"exists": False}],
        "requestParameters": {"outpostConfig": {"outpostArns": outpost_arns}},
    }


class Trigger(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        state_machine: sfn.IStateMachine,
        allowed_outpost_arns: tuple[str, ...],
        create_trail: bool,
    ) -> None:
        super().__init__(scope, construct_id)
        self.dead_letter_queue = sqs.Queue(
            self,
            "DeadLetterQueue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        self.cloudtrail_rule = events.Rule(
            self,
            "CreateClusterRule",
            description="EKS CreateCluster (CloudTrail) for clusters on AWS Outposts -> Lifeline workflow",
            event_pattern=events.EventPattern(
                source=[constants.CLOUDTRAIL_SOURCE],
                detail_type=[constants.CLOUDTRAIL_DETAIL_TYPE],
                detail=cloudtrail_detail_pattern(allowed_outpost_arns),
            ),
        )
        self.provision_rule = events.Rule(
            self,
            "ProvisionRequestRule",
            description="Lifeline Provision Request -> Lifeline workflow (creates the cluster)",
            event_pattern=events.EventPattern(
                source=[constants.EVENT_SOURCE],
                detail_type=[constants.PROVISION_REQUEST_DETAIL_TYPE],
            ),
        )
        for rule in (self.cloudtrail_rule, self.provision_rule):
            rule.add_target(
                targets.SfnStateMachine(
                    state_machine,
                    dead_letter_queue=self.dead_letter_queue,
                    retry_attempts=TARGET_RETRY_ATTEMPTS,
                    max_event_age=TARGET_MAX_EVENT_AGE,
                )
            )
        self.trail = (
            cloudtrail.Trail(self, "Trail", is_multi_region_trail=False, include_global_service_events=False)
            if create_trail
            else None
        )
        if self.trail is not None:
            _harden_trail_bucket(self.trail)


def _harden_trail_bucket(trail: cloudtrail.Trail) -> None:
    """The bucket the Trail construct makes for itself: no public access at all, and versioned."""
    bucket = trail.node.find_child("S3").node.default_child
    if not isinstance(bucket, s3.CfnBucket):
        raise TypeError(f"{trail.node.path}: the trail's bucket is not an S3 bucket resource")
    bucket.public_access_block_configuration = s3.CfnBucket.PublicAccessBlockConfigurationProperty(
        block_public_acls=True, block_public_policy=True, ignore_public_acls=True, restrict_public_buckets=True
    )
    bucket.versioning_configuration = s3.CfnBucket.VersioningConfigurationProperty(status="Enabled")
