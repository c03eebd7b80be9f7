"""The infra template and its local applier: AWS's rules hold, and applying twice changes nothing."""

from __future__ import annotations

import json

import boto3
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


def test_applying_twice_changes_nothing(monkeypatch):
    for key, value in {
        "AWS_ACCESS_KEY_ID": "t",
        "AWS_SECRET_ACCESS_KEY": "t",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        first = apply("local", {"VisibilityTimeoutSeconds": 180}, log=lambda _: None)
        before = snapshot()
        second = apply("local", {"VisibilityTimeoutSeconds": 180}, log=lambda _: None)
        assert first == second and snapshot() == before
        assert len([k for k in before if k.startswith("http")]) == 8
        redrive = json.loads(before[first["NormalQueueUrl"]]["RedrivePolicy"])  # type: ignore[index]
        assert redrive["deadLetterTargetArn"].endswith("herald-local-normal-dlq")
