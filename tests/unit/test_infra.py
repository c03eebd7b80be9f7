"""The infra template and its local applier: AWS's rules hold, and applying twice changes nothing."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from infra.apply import apply
from infra.template import MAX_RECEIVE_COUNT, PRIORITIES, template


def test_every_queue_has_a_dlq_and_visibility_respects_six_times_the_worker_timeout():
    doc = template()
    queues = {k: v for k, v in doc["Resources"].items() if v["Type"] == "AWS::SQS::Queue"}
    assert len(queues) == 2 * len(PRIORITIES)
    for name, queue in queues.items():
        if "DeadLetter" not in name:
            assert queue["Properties"]["RedrivePolicy"]["maxReceiveCount"] == MAX_RECEIVE_COUNT
    with open(".chalice/config.json") as f:
        timeout = json.load(f)["lambda_timeout"]
    assert doc["Parameters"]["VisibilityTimeoutSeconds"]["Default"] >= 6 * timeout


@pytest.fixture
def fake_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    credentials = {"AWS_ACCESS_KEY_ID": "t", "AWS_SECRET_ACCESS_KEY": "t", "AWS_DEFAULT_REGION": "us-east-1"}
    for key, value in credentials.items():
        monkeypatch.setenv(key, value)


def snapshot() -> dict[str, object]:
    sqs, ddb = boto3.client("sqs"), boto3.client("dynamodb")
    state: dict[str, object] = {}
    for url in sqs.list_queues()["QueueUrls"]:
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        state[url] = {k: v for k, v in attributes.items() if "Timestamp" not in k}
    for table in ddb.list_tables()["TableNames"]:
        description = ddb.describe_table(TableName=table)["Table"]
        state[table] = (description["KeySchema"], description["GlobalSecondaryIndexes"][0]["IndexName"])
    return state


def test_applying_twice_changes_nothing(fake_aws):
    with mock_aws():
        first = apply("local", {"VisibilityTimeoutSeconds": 180}, log=lambda _: None)
        before = snapshot()
        second = apply("local", {"VisibilityTimeoutSeconds": 180}, log=lambda _: None)
        assert first == second and snapshot() == before
        assert len([k for k in before if k.startswith("http")]) == 8
        redrive = json.loads(before[first["NormalQueueUrl"]]["RedrivePolicy"])  # type: ignore[index]
        assert redrive["deadLetterTargetArn"].endswith("herald-local-normal-dlq")


def test_every_alarm_notifies_the_alarm_topic_when_it_fires_and_when_it_clears():
    doc = template()
    alarms = {k: v["Properties"] for k, v in doc["Resources"].items() if v["Type"] == "AWS::CloudWatch::Alarm"}
    metrics = {(a["Namespace"], a["MetricName"]) for a in alarms.values()}
    assert {("AWS/Lambda", "Errors"), ("AWS/Lambda", "Throttles"), ("AWS/ApiGateway", "5XXError")} <= metrics
    assert {("AWS/SQS", "ApproximateNumberOfMessagesVisible"), ("AWS/SQS", "ApproximateAgeOfOldestMessage")} <= metrics
    for name, alarm in alarms.items():
        assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}] == alarm["OKActions"], name
    assert doc["Resources"]["AlarmTopic"]["Type"] == "AWS::SNS::Topic"


def test_the_alarm_subscriptions_exist_only_when_their_parameters_are_given(fake_aws):
    with mock_aws():
        outputs = apply("local", {}, log=lambda _: None)
        sns = boto3.client("sns")
        topic = outputs["AlarmTopicArn"]
        assert sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"] == []
        apply("local", {"AlarmEmail": "oncall@example.com"}, log=lambda _: None)
        apply("local", {"AlarmEmail": "oncall@example.com"}, log=lambda _: None)
        subscriptions = sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
        assert [(s["Protocol"], s["Endpoint"]) for s in subscriptions] == [("email", "oncall@example.com")]
        alarm = boto3.client("cloudwatch").describe_alarms(AlarmNames=["herald-local-normal-dead-letters"])
        assert alarm["MetricAlarms"][0]["AlarmActions"] == [topic]
