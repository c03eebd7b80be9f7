"""Dead letters reach the DLQ by SQS's redrive policy and revive when any tool brings them back.

GIVEN a job that dies, WHEN its burial message is moved out of the DLQ (by Herald's redrive, the
console, or StartMessageMoveTask with or without a destination), THEN it runs once more from
attempt 1 and leaves the ledger; any other message of the dead job never runs it
(chalicelib/jobs/burial.py). moto plays SQS, with the queues' redrive policy (maxReceiveCount 12).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from chalicelib.errors import FatalError
from chalicelib.jobs.burial import back_from_dlq
from tests.unit.test_worker import Harness, sqs_record

NORMAL = "herald-local-normal"
DLQ = "herald-local-normal-dlq"


@pytest.fixture
def h(svc: Any) -> Harness:
    return Harness(svc)


def kill(h: Harness) -> tuple[str, list[dict[str, Any]]]:
    """A job that dies (fatal) and whose burial message SQS moved to the DLQ; (job id, the
    message that ran it, as the worker got it)."""
    job = h.enqueue()
    h.script = [FatalError("http_410", "gone")]
    original = h.receive()
    assert h.run(original) == {"batchItemFailures": []}
    h.svc.sqs.delete_message(QueueUrl=h.queue.url_of(NORMAL), ReceiptHandle=original[0]["ReceiptHandle"])
    h.settle()
    return job.job_id, original


def move_out_of_dlq(h: Harness, *, keep_source_arn: bool) -> list[dict[str, Any]]:
    """What a move task does: every DLQ message into the source queue (a new message there).
    `keep_source_arn`: the record then shows DeadLetterQueueSourceArn, as the local cloud's does."""
    url = h.queue.url_of(DLQ)
    moved = []
    while messages := h.svc.sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], AttributeNames=["All"]
    ).get("Messages", []):
        for m in messages:
            h.svc.sqs.send_message(
                QueueUrl=h.queue.url_of(NORMAL),
                MessageBody=m["Body"],
                MessageAttributes=m.get("MessageAttributes", {}),
            )
            h.svc.sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
            moved.append(m)
    got = h.receive()
    if keep_source_arn:
        for m in got:
            m.setdefault("Attributes", {})["DeadLetterQueueSourceArn"] = "arn:aws:sqs:us-east-1:123456789012:" + NORMAL
            m["Attributes"]["ApproximateReceiveCount"] = "14"  # the local cloud keeps counting
    return got


def test_a_dead_jobs_burial_message_reaches_the_dlq_with_its_reason_and_the_ledger_lists_it(h):
    job_id, _ = kill(h)
    assert h.job(job_id).status == "dead" and h.job(job_id).burial
    (entry,) = h.ledger.list(NORMAL)
    assert entry["job_id"] == job_id and entry["burial"] == h.job(job_id).burial
    (dead,) = h.receive(DLQ)
    assert json.loads(dead["Body"])["burial"] == entry["burial"] and dead["MessageId"] == entry["message_id"]
    assert dead["MessageAttributes"]["error_code"]["StringValue"] == "http_410"
    assert h.effects == []


@pytest.mark.parametrize("keep_source_arn", [False, True], ids=["receive-count-reset", "dlq-source-arn"])
def test_moved_back_by_any_tool_the_job_runs_once_from_attempt_1_and_leaves_the_ledger(h, keep_source_arn):
    job_id, _ = kill(h)
    back = move_out_of_dlq(h, keep_source_arn=keep_source_arn)
    assert h.run(back) == {"batchItemFailures": []}
    job = h.job(job_id)
    assert job.status == "completed" and job.attempts == 1 and job.burial is None
    assert h.effects == [job_id] and h.ledger.list(NORMAL) == []
    assert h.run(back) == {"batchItemFailures": []}  # a second copy of the burial message
    assert h.effects == [job_id]


def test_a_late_duplicate_of_the_original_message_never_runs_a_dead_job(h):
    job_id, original = kill(h)
    assert h.run(original) == {"batchItemFailures": []}  # SQS delivers the message that ran again
    assert h.effects == [] and h.job(job_id).status == "dead"
    assert len(h.ledger.list(NORMAL)) == 1 and len(h.receive(DLQ)) == 1


def test_a_burial_message_of_an_earlier_death_does_not_revive_the_job_after_it_died_again(h):
    job_id, _ = kill(h)
    back = move_out_of_dlq(h, keep_source_arn=False)
    h.script = [FatalError("http_410", "gone again")]
    assert h.run(back) == {"batchItemFailures": []}  # revived, ran, died again: a new burial
    second = h.job(job_id).burial
    assert h.job(job_id).status == "dead" and second
    h.run(back)  # the first burial's message again
    assert h.job(job_id).status == "dead" and h.job(job_id).burial == second and h.effects == []


def test_when_the_burial_message_could_not_be_sent_the_redelivered_original_sends_it(h, monkeypatch):
    job = h.enqueue()
    h.script = [FatalError("http_410", "gone")]
    original = h.receive()
    send = h.queue.send_to_bury

    def down(*args: Any, **kwargs: Any) -> str:
        raise RuntimeError("SQS is down")

    monkeypatch.setattr(h.queue, "send_to_bury", down)
    response = h.run(original)
    assert response == {"batchItemFailures": [{"itemIdentifier": original[0]["MessageId"]}]}
    assert h.job(job.job_id).status == "dead" and h.ledger.list(NORMAL) == []
    monkeypatch.setattr(h.queue, "send_to_bury", send)
    assert h.run(original) == {"batchItemFailures": []}  # it comes back
    h.svc.sqs.delete_message(QueueUrl=h.queue.url_of(NORMAL), ReceiptHandle=original[0]["ReceiptHandle"])
    h.settle()
    assert len(h.ledger.list(NORMAL)) == 1 and len(h.receive(DLQ)) == 1 and h.effects == []


def test_back_from_the_dlq_means_the_dlq_source_arn_or_a_receive_count_counted_afresh():
    assert not back_from_dlq(None, 3, 2)  # still on its way: more receives than seen so far
    assert back_from_dlq(None, 1, 12)  # SQS counts a redriven message's receives afresh
    assert back_from_dlq("arn:x", 13, 12)  # the local cloud keeps counting, but marks the source
    assert not back_from_dlq(None, 0, 0)


def test_a_record_built_from_a_burial_message_says_where_it_came_from(h):
    job_id, _ = kill(h)
    (back,) = move_out_of_dlq(h, keep_source_arn=True)
    assert sqs_record(back)["attributes"]["DeadLetterQueueSourceArn"].endswith(NORMAL)
    h.run([back])
    assert h.effects == [job_id]
