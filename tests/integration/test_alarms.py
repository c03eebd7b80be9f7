"""Alarms page: every alarm of the deployed local stack notifies the alarm topic, and a subscriber
of that topic hears it.

The local cloud evaluates alarms, but it does not publish SQS's queue metrics the way AWS does, so
the DLQ alarm is driven into ALARM with SetAlarmState (what AWS documents for testing alarm
actions); CloudWatch then runs the alarm's actions, which is the part Herald configures.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from tests.support.api import wait_for
from tests.support.cloud import LocalCloud

pytestmark = pytest.mark.integration

ALARM = "herald-local-normal-dead-letters"


def test_a_dlq_alarm_in_alarm_notifies_the_topics_subscriber(stack: dict[str, Any], local_cloud: LocalCloud):
    sns, sqs, cloudwatch = (local_cloud.client(name) for name in ("sns", "sqs", "cloudwatch"))
    topic = sns.create_topic(Name="herald-local-alarms")["TopicArn"]  # the stack's, by name
    [alarm] = cloudwatch.describe_alarms(AlarmNames=[ALARM])["MetricAlarms"]
    assert alarm["AlarmActions"] == [topic] and alarm["OKActions"] == [topic]

    # GIVEN an on-call subscriber of the alarm topic (an SQS queue stands in for a pager)
    pager = sqs.create_queue(QueueName=f"herald-test-pager-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    pager_arn = sqs.get_queue_attributes(QueueUrl=pager, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    subscription = sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=pager_arn, ReturnSubscriptionArn=True)
    try:
        # WHEN the DLQ alarm goes into ALARM (from OK: only a change of state runs the actions)
        cloudwatch.set_alarm_state(AlarmName=ALARM, StateValue="OK", StateReason="test: start")
        cloudwatch.set_alarm_state(AlarmName=ALARM, StateValue="ALARM", StateReason="test: a dead letter")

        # THEN the subscriber is notified, naming the alarm
        def notified() -> dict[str, Any] | None:
            for message in sqs.receive_message(QueueUrl=pager, WaitTimeSeconds=1).get("Messages", []):
                body = json.loads(json.loads(message["Body"])["Message"])
                if body.get("AlarmName") == ALARM and body.get("NewStateValue") == "ALARM":
                    return body
            return None

        body = wait_for(notified, 60, "the alarm notification")
        assert body["NewStateReason"] == "test: a dead letter"
    finally:
        cloudwatch.set_alarm_state(AlarmName=ALARM, StateValue="OK", StateReason="test over")
        sns.unsubscribe(SubscriptionArn=subscription["SubscriptionArn"])
        sqs.delete_queue(QueueUrl=pager)
