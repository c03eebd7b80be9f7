"""SQS's own redrive on the deployed local stack: what an operator does from the console or the
AWS CLI (`aws sqs start-message-move-task`, with and without `--destination-arn`) runs each dead
job once more from attempt 1 and empties the ledger; a late duplicate of a dead job's original
message never runs it; a message SQS moved to the DLQ on its own is listed and can be redriven.

The `low` queue, emptied first (`low_queue` from test_operations.py).
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from typing import Any

import pytest

from chalicelib.jobs.model import Envelope
from tests.contract.webhook_receiver import Reply, WebhookReceiver
from tests.integration.test_operations import DLQ, PEEK, QUEUE, deliveries_since, low_queue, queue_row, webhook
from tests.reliability.harness import Jobs
from tests.support.api import Api, wait_for
from tests.support.cloud import LocalCloud

pytestmark = pytest.mark.integration
__all__ = ["low_queue"]


def arn(sqs: Any, name: str) -> str:
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    return str(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"])


def move(sqs: Any, destination: str | None) -> dict[str, Any]:
    """`aws sqs start-message-move-task` on the low DLQ, followed to its end."""
    source = arn(sqs, DLQ)
    request: dict[str, Any] = {"SourceArn": source}
    if destination:
        request["DestinationArn"] = arn(sqs, destination)
    handle = sqs.start_message_move_task(**request)["TaskHandle"]
    assert handle

    def finished() -> dict[str, Any] | None:
        tasks = sqs.list_message_move_tasks(SourceArn=source, MaxResults=10).get("Results", [])
        task = max(tasks, key=lambda t: int(t.get("StartedTimestamp", 0)), default=None)
        return task if task and task["Status"] != "RUNNING" else None

    return wait_for(finished, 60, "the move task to finish", interval=0.5)


def original_message(job: dict[str, Any]) -> str:
    """The body of the message that ran the job first (no burial): what a late duplicate carries."""
    return json.dumps(
        {
            "v": 1,
            "job_id": job["job_id"],
            "org_id": job["org_id"],
            "type": job["type"],
            "attempt": 0,
            "run_at": job["run_at"],
            "correlation_id": "late-duplicate",
        }
    )


def consumed(sqs: Any, url: str) -> bool:
    """Every message of the queue received and deleted (the worker has had them all)."""
    names = [
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
    ]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return all(int(attributes[name]) == 0 for name in names)


def ledger_empty(admin: Api) -> bool:
    reply = admin.get(PEEK)
    assert reply.status == 200, reply
    return reply.body["items"] == []


@pytest.mark.parametrize("destination", [None, QUEUE], ids=["redrive-to-source", "custom-destination"])
def test_sqs_move_task_runs_each_dead_job_once_from_attempt_1_and_a_late_duplicate_never(
    low_queue, admin, operator, receiver, local_cloud: LocalCloud, destination
):
    sqs = local_cloud.client("sqs")
    source_url = sqs.get_queue_url(QueueName=QUEUE)["QueueUrl"]
    # GIVEN two webhook jobs that died at once (their receiver answered 400)
    receiver.default = Reply(400)
    ids = [admin.post("/v1/jobs", webhook(receiver, n)).body["job_id"] for n in range(2)]
    dead = [admin.wait_for_job(job_id, {"dead"}, timeout=60) for job_id in ids]
    wait_for(lambda: queue_row(operator)["dlq_depth"] == 2 or None, 60, "both burial messages in the DLQ")
    assert {item["job_id"] for item in admin.get(PEEK).body["items"]} == set(ids)
    # AND a late duplicate of one's original message arrives: it does not run the dead job
    sqs.send_message(QueueUrl=source_url, MessageBody=original_message(dead[0]))
    wait_for(lambda: consumed(sqs, source_url) or None, 30, "the worker to take the late duplicate")
    assert len(receiver.requests) == 2 and admin.get(f"/v1/jobs/{ids[0]}").body["status"] == "dead"

    # WHEN the receiver is fixed and the operator moves the DLQ back with SQS's own task
    receiver.default = Reply(200)
    mark = len(receiver.requests)
    task = move(sqs, destination)
    assert task["Status"] == "COMPLETED", task
    assert int(task["ApproximateNumberOfMessagesMoved"]) == 2

    # THEN each job runs once more from attempt 1, the ledger and the DLQ are empty
    for job_id in ids:
        assert admin.wait_for_job(job_id, {"completed"}, timeout=60)["attempts"] == 1
    wait_for(lambda: ledger_empty(admin) or None, 30, "the ledger to be empty")
    assert queue_row(operator)["dlq_depth"] == 0
    # AND a late duplicate of the original message now finds the job completed: nothing runs
    sqs.send_message(QueueUrl=source_url, MessageBody=original_message(dead[1]))
    wait_for(lambda: consumed(sqs, source_url) or None, 30, "the worker to take the late duplicate")
    assert deliveries_since(receiver, mark) == Counter({ids[0]: 1, ids[1]: 1})


def test_a_message_sqs_moved_to_the_dlq_on_its_own_is_listed_and_redriven(
    low_queue, admin, operator, local_cloud: LocalCloud, orgs
):
    # GIVEN a queued job whose message a queue's redrive policy moved to the low DLQ (received
    # more often than maxReceiveCount without an outcome; here: a queue with maxReceiveCount 1
    # whose DLQ is the low DLQ, received twice, as a worker crashing every time would)
    sqs = local_cloud.client("sqs")
    jobs = Jobs(local_cloud)
    with WebhookReceiver(default=Reply(200)) as receiver:
        job = jobs.new(orgs[0], "webhook", {"url": receiver.url, "body": {"n": 1}}, priority="low")
        jobs.store.create(job)
        crashing = sqs.create_queue(
            QueueName=f"herald-test-crashing-{uuid.uuid4().hex[:8]}",
            Attributes={"RedrivePolicy": json.dumps({"deadLetterTargetArn": arn(sqs, DLQ), "maxReceiveCount": 1})},
        )["QueueUrl"]
        try:
            sqs.send_message(QueueUrl=crashing, MessageBody=Envelope.of(job).to_json())
            for _ in range(3):
                sqs.receive_message(QueueUrl=crashing, VisibilityTimeout=0, WaitTimeSeconds=1)
            wait_for(lambda: queue_row(operator)["dlq_depth"] == 1 or None, 30, "SQS to move it to the DLQ")

            # WHEN the dead letters are listed THEN it is there (within the minute a container
            # reconciles a queue's ledger at most once), with why, and it stays in the DLQ
            [letter] = wait_for(lambda: admin.get(PEEK).body["items"] or None, 90, "it to be listed", interval=2)
            assert letter["job_id"] == job.job_id and letter["last_error"]["code"] == "receive_limit_exceeded"
            assert queue_row(operator)["dlq_depth"] == 1

            # WHEN it is moved back to the low queue THEN the job runs once and leaves the ledger
            assert move(sqs, QUEUE)["Status"] == "COMPLETED"
            assert admin.wait_for_job(job.job_id, {"completed"}, timeout=60)["attempts"] == 1
            wait_for(lambda: ledger_empty(admin) or None, 30, "the ledger to be empty")
            low = sqs.get_queue_url(QueueName=QUEUE)["QueueUrl"]
            wait_for(lambda: consumed(sqs, low) or None, 30, "the low queue to have nothing left to run")
            assert len(receiver.requests) == 1
        finally:
            sqs.delete_queue(QueueUrl=crashing)
