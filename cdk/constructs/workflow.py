"""Workflow: the Standard state machine.

ReceiveInput -> NormaliseRequest -> [CreateCluster] -> CheckCluster <-> WaitForCluster (bounded)
-> BootstrapRbac -> StoreSecret -> PublishReady -> WaitForAgents -> WatchReadiness -> Ready.
A cluster without ``outpostConfig`` ends in Skipped. Every Task retries transient errors with backoff and
catches everything else into PublishFailure -> Failed, which carries the step's error name and cause.

The secret is written last: it is what tells the agents that a cluster has offline access, so it exists
only once the RBAC it relies on does. BootstrapRbac undoes its own partial work when it fails; when
StoreSecret fails, RollbackRbac removes what BootstrapRbac created before the failure is published.

WatchReadiness sets the cluster's readiness alarm (lambdas/watch_readiness) once the agents had
``readiness_grace`` to find the secret and report: made earlier it would page for every new cluster. It is the
last step, so nothing after it can fail and call for its removal; when it fails no alarm exists (one
PutMetricAlarm) and the execution fails with ReadinessAlarmFailed, while the cluster keeps its offline access.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from lambdas import constants

LAMBDA_TRANSIENT_ERRORS = [
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
    "TransientAwsError",
    "ClusterUnreachable",
]
EVENTS_TRANSIENT_ERRORS = [
    "EventBridge.InternalException",
    "EventBridge.ThrottlingException",
    "EventBridge.FailedEntry",
]
RETRY_INTERVAL = Duration.seconds(2)
RETRY_MAX_ATTEMPTS = 3
RETRY_BACKOFF_RATE = 2.0
RETRY_MAX_DELAY = Duration.seconds(30)


def _retry(task: sfn.TaskStateBase, errors: list[str]) -> None:
    task.add_retry(
        errors=errors,
        interval=RETRY_INTERVAL,
        max_attempts=RETRY_MAX_ATTEMPTS,
        backoff_rate=RETRY_BACKOFF_RATE,
        max_delay=RETRY_MAX_DELAY,
        jitter_strategy=sfn.JitterType.FULL,
    )


class Workflow(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        normalise_request: lambda_.IFunction,
        create_cluster: lambda_.IFunction,
        check_cluster: lambda_.IFunction,
        store_secret: lambda_.IFunction,
        bootstrap_rbac: lambda_.IFunction,
        rollback_rbac: lambda_.IFunction,
        watch_readiness: lambda_.IFunction,
        readiness_grace: Duration,
        timeout: Duration,
        log_key: kms.IKey,
    ) -> None:
        super().__init__(scope, construct_id)
        failure = self._failure_path()

        def step(construct_id: str, function: lambda_.IFunction, payload: dict[str, object] | None,
                 result_path: str, input_path: str | None = None,
                 on_error: sfn.IChainable = failure) -> tasks.LambdaInvoke:
            task = tasks.LambdaInvoke(
                self,
                construct_id,
                lambda_function=function,
                payload=sfn.TaskInput.from_object(payload) if payload is not None else None,
                input_path=input_path,
                payload_response_only=True,
                retry_on_service_exceptions=False,
                result_path=result_path,
            )
            _retry(task, LAMBDA_TRANSIENT_ERRORS)
            task.add_catch(on_error, errors=[sfn.Errors.ALL], result_path="$.failure")
            return task

        receive = sfn.Pass(
            self,
            "ReceiveInput",
            comment="Wrap the raw input so that failure details can always be attached to the state",
            parameters={"input": sfn.JsonPath.entire_payload, "request": {"clusterName": ""}},
        )
        # The raw input travels wrapped in an object: it may be any JSON value (a list, a string...).
        normalise = step(
            "NormaliseRequest", normalise_request, {"input": sfn.JsonPath.object_at("$.input")}, "$.request"
        )
        create = step("CreateCluster", create_cluster, None, "$.created", input_path="$.request.createRequest")
        # DescribeCluster is called inside CheckCluster rather than as an aws-sdk integration: the decision
        # (deadline, health issues, allowed Outposts, contract fields) is Python, and one Task per poll keeps
        # the loop short.
        check = step(
            "CheckCluster",
            check_cluster,
            {
                "clusterName": sfn.JsonPath.string_at("$.request.clusterName"),
                "deadline": sfn.JsonPath.string_at("$.request.poll.deadline"),
            },
            "$.check",
        )
        wait = sfn.Wait(self, "WaitForCluster", time=sfn.WaitTime.seconds_path("$.request.poll.intervalSeconds"))
        bootstrap = step(
            "BootstrapRbac", bootstrap_rbac, {"cluster": sfn.JsonPath.object_at("$.check.cluster")}, "$.rbac"
        )
        # Success goes on to the failure path too: the execution still fails with StoreSecret's error.
        rollback = step(
            "RollbackRbac",
            rollback_rbac,
            {
                "cluster": sfn.JsonPath.object_at("$.check.cluster"),
                "created": sfn.JsonPath.object_at("$.rbac.created"),
                "failure": sfn.JsonPath.object_at("$.failure"),
            },
            "$.rollback",
        ).next(failure)
        store = step(
            "StoreSecret", store_secret, {"cluster": sfn.JsonPath.object_at("$.check.cluster")}, "$.secret",
            on_error=rollback,
        )
        publish_ready = tasks.EventBridgePutEvents(
            self,
            "PublishReady",
            entries=[
                tasks.EventBridgePutEventsEntry(
                    source=constants.EVENT_SOURCE,
                    detail_type=constants.READY_DETAIL_TYPE,
                    detail=sfn.TaskInput.from_object(
                        {
                            "clusterName": sfn.JsonPath.string_at("$.check.cluster.name"),
                            "clusterArn": sfn.JsonPath.string_at("$.check.cluster.arn"),
                            "secretName": sfn.JsonPath.string_at("$.secret.secretName"),
                            "secretArn": sfn.JsonPath.string_at("$.secret.secretArn"),
                            "caSha256": sfn.JsonPath.string_at("$.secret.caSha256"),
                            "rbacObjects": sfn.JsonPath.list_at("$.rbac.applied"),
                            "executionArn": sfn.JsonPath.execution_id,
                        }
                    ),
                )
            ],
            result_path=sfn.JsonPath.DISCARD,
        )
        _retry(publish_ready, EVENTS_TRANSIENT_ERRORS)
        publish_ready.add_catch(failure, errors=[sfn.Errors.ALL], result_path="$.failure")
        wait_for_agents = sfn.Wait(
            self, "WaitForAgents", comment="The agents' grace period: find the new secret, bootstrap, report",
            time=sfn.WaitTime.duration(readiness_grace),
        )
        watch = step(
            "WatchReadiness", watch_readiness, {"cluster": sfn.JsonPath.object_at("$.check.cluster")}, "$.readiness"
        )
        ready = sfn.Pass(
            self,
            "Ready",
            parameters={
                "status": "READY",
                "clusterName": sfn.JsonPath.string_at("$.check.cluster.name"),
                "secretName": sfn.JsonPath.string_at("$.secret.secretName"),
                "secretChanged": sfn.JsonPath.string_at("$.secret.changed"),
                "rbacObjects": sfn.JsonPath.list_at("$.rbac.applied"),
                "readinessAlarm": sfn.JsonPath.string_at("$.readiness.alarmName"),
            },
        )
        skipped = sfn.Pass(
            self,
            "Skipped",
            comment="Not a local cluster (no outpostConfig): nothing to do, nothing written",
            parameters={
                "status": "SKIPPED",
                "clusterName": sfn.JsonPath.string_at("$.request.clusterName"),
                "reason": sfn.JsonPath.string_at("$.check.reason"),
            },
        )
        cluster_state = (
            sfn.Choice(self, "ClusterState")
            .when(sfn.Condition.string_equals("$.check.verdict", "READY"),
                  bootstrap.next(store).next(publish_ready).next(wait_for_agents).next(watch).next(ready))
            .when(sfn.Condition.string_equals("$.check.verdict", "SKIP"), skipped)
            .otherwise(wait.next(check))
        )
        create_requested = (
            sfn.Choice(self, "CreateRequested")
            .when(sfn.Condition.boolean_equals("$.request.create", True), create.next(check))
            .otherwise(check)
        )
        definition = receive.next(normalise).next(create_requested)
        check.next(cluster_state)

        self.log_group = logs.LogGroup(
            self, "ExecutionLogs", retention=logs.RetentionDays.THREE_MONTHS, removal_policy=RemovalPolicy.DESTROY,
            encryption_key=log_key,
        )
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            comment="Lifeline: offline access for EKS local clusters on AWS Outposts",
            definition_body=sfn.DefinitionBody.from_chainable(definition),
            state_machine_type=sfn.StateMachineType.STANDARD,
            timeout=timeout,
            tracing_enabled=True,
            logs=sfn.LogOptions(destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=False),
        )

    def _failure_path(self) -> sfn.IChainable:
        publish_failure = tasks.EventBridgePutEvents(
            self,
            "PublishFailure",
            entries=[
                tasks.EventBridgePutEventsEntry(
                    source=constants.EVENT_SOURCE,
                    detail_type=constants.FAILED_DETAIL_TYPE,
                    detail=sfn.TaskInput.from_object(
                        {
                            "clusterName": sfn.JsonPath.string_at("$.request.clusterName"),
                            "error": sfn.JsonPath.string_at("$.failure.Error"),
                            "reason": sfn.JsonPath.string_at("$.failure.Cause"),
                            "executionArn": sfn.JsonPath.execution_id,
                        }
                    ),
                )
            ],
            result_path=sfn.JsonPath.DISCARD,
        )
        _retry(publish_failure, EVENTS_TRANSIENT_ERRORS)
        # States.* names are reserved for Fail states: runtime errors end under one name of ours.
        failed = sfn.Fail(self, "Failed", error_path="$.failure.Error", cause_path="$.failure.Cause")
        runtime_failed = sfn.Fail(self, "WorkflowRuntimeError", error="WorkflowRuntimeError",
                                  cause_path="$.failure.Cause")
        end = (
            sfn.Choice(self, "FailureKind")
            .when(sfn.Condition.string_matches("$.failure.Error", "States.*"), runtime_failed)
            .otherwise(failed)
        )
        publish_failure.add_catch(end, errors=[sfn.Errors.ALL], result_path="$.publishError")
        return publish_failure.next(end)
