"""Monitoring: alarms on failed or timed-out executions and on events the trigger could not deliver."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

PERIOD = Duration.minutes(5)


class Monitoring(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        state_machine: sfn.StateMachine,
        dead_letter_queue: sqs.IQueue,
        alarm_topic_arn: str | None,
    ) -> None:
        super().__init__(scope, construct_id)
        failed_or_timed_out = cloudwatch.MathExpression(
            expression="failed + timedOut",
            using_metrics={
                "failed": state_machine.metric_failed(period=PERIOD, statistic="Sum"),
                "timedOut": state_machine.metric_timed_out(period=PERIOD, statistic="Sum"),
            },
            label="Failed or timed-out Lifeline executions",
            period=PERIOD,
        )
        self.execution_alarm = cloudwatch.Alarm(
            self,
            "ExecutionsFailedAlarm",
            alarm_description="A Lifeline workflow execution failed or timed out: a cluster has no offline access",
            metric=failed_or_timed_out,
            threshold=1,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        self.dead_letter_alarm = cloudwatch.Alarm(
            self,
            "UndeliveredTriggerAlarm",
            alarm_description="EventBridge could not start the Lifeline workflow (message in the dead-letter queue)",
            metric=dead_letter_queue.metric_approximate_number_of_messages_visible(period=PERIOD, statistic="Max"),
            threshold=1,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        self.alarms = [self.execution_alarm, self.dead_letter_alarm]
        if alarm_topic_arn:
            topic = sns.Topic.from_topic_arn(self, "AlarmTopic", alarm_topic_arn)
            for alarm in self.alarms:
                alarm.add_alarm_action(actions.SnsAction(topic))
