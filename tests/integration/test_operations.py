"""Operations on the deployed local stack: dead letters peeked without consuming them, redriven
through the redrive worker Lambda and SQS's move task, and the `herald` CLI following a redrive.

These tests use the `low` queue, which no other test sends to, and start from an empty DLQ: the
dead letters earlier runs left there (their receivers are gone) are drained first.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.contract.webhook_receiver import Reply, WebhookReceiver
from tests.support.api import Api, wait_for
from tests.support.cloud import LocalCloud

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
QUEUE = "herald-local-low"
DLQ = f"{QUEUE}-dlq"
PEEK = f"/v1/admin/queues/{QUEUE}/dead-letters"
REDRIVE = f"/v1/admin/queues/{QUEUE}/redrive"


@pytest.fixture
def low_queue(stack: dict[str, Any], local_cloud: LocalCloud) -> Iterator[None]:
    """An empty DLQ and ledger for the low queue, and no redrive lock left by an earlier run."""
    sqs = local_cloud.client("sqs")
    ddb = local_cloud.client("dynamodb")
    source = sqs.get_queue_url(QueueName=QUEUE)["QueueUrl"]

    def settled() -> bool:
        # Burial messages of an earlier test still on their way to the DLQ land there first.
        # (Visible ones only: a message hidden for a long retry is not one of those.)
        attributes = sqs.get_queue_attributes(QueueUrl=source, AttributeNames=["ApproximateNumberOfMessages"])
        return int(attributes["Attributes"]["ApproximateNumberOfMessages"]) == 0

    wait_for(settled, 60, "the low queue to settle", interval=0.5)
    url = sqs.get_queue_url(QueueName=DLQ)["QueueUrl"]
    while True:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=60).get("Messages", [])
        if not messages:
            break
        sqs.delete_message_batch(
            QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)]
        )
    table = "herald-local"
    query: dict[str, Any] = {
        "TableName": table,
        "KeyConditionExpression": "pk = :pk",
        "ExpressionAttributeValues": {":pk": {"S": f"DEAD#{QUEUE}"}},
        "ProjectionExpression": "pk, sk",
    }
    while True:
        page = ddb.query(**query)
        for item in page.get("Items", []):
            ddb.delete_item(TableName=table, Key=item)
        if "LastEvaluatedKey" not in page:
            break
        query["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    ddb.delete_item(TableName=table, Key={"pk": {"S": f"REDRIVE#QUEUE#{QUEUE}"}, "sk": {"S": "LOCK"}})
    yield


def webhook(receiver: WebhookReceiver, n: int, **extra: Any) -> dict[str, Any]:
    return {"type": "webhook", "payload": {"url": receiver.url, "body": {"n": n}}, "priority": "low", **extra}


def create(admin: Api, body: dict[str, Any], key: str) -> str:
    """POST /v1/jobs as a careful client does: an idempotency key, and a retry on a timeout or 5xx."""
    for attempt in range(4):
        try:
            reply = admin.post("/v1/jobs", {**body, "idempotency_key": key})
        except OSError:  # timed out or dropped under load: the key makes the retry safe
            time.sleep(1 + attempt)
            continue
        if reply.status < 500:
            assert reply.status in (200, 202), reply
            return str(reply.body["job_id"])
        time.sleep(1 + attempt)
    raise AssertionError(f"could not create job {key}")


def queue_row(operator: Api) -> dict[str, Any]:
    reply = operator.get("/v1/admin/queues")
    assert reply.status == 200, reply
    return next(row for row in reply.body["items"] if row["name"] == QUEUE)


def wait_redrive(caller: Api, redrive_id: str, timeout: float = 120) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        reply = caller.get(f"{REDRIVE}/{redrive_id}")
        assert reply.status == 200, reply
        return reply.body if reply.body["status"] != "running" else None

    return wait_for(done, timeout, f"redrive {redrive_id} to finish", interval=0.5)


def dead_letter_ids(operator: Api) -> set[str]:
    """Every job id in the low queue's dead letters (all pages)."""
    ids: set[str] = set()
    cursor = ""
    while True:
        page = operator.get(f"{PEEK}?limit=100" + (f"&cursor={cursor}" if cursor else ""))
        assert page.status == 200, page
        ids |= {item["job_id"] for item in page.body["items"]}
        cursor = page.body["next_cursor"]
        if not cursor:
            return ids


def deliveries_since(receiver: WebhookReceiver, mark: int) -> Counter[str]:
    return Counter(r.headers.get("webhook-id", "") for r in receiver.requests[mark:])


def test_a_dead_job_is_peeked_twice_redriven_and_delivered_exactly_once(low_queue, admin, operator, receiver):
    # GIVEN a webhook whose receiver answers 500: two attempts, then dead
    receiver.default = Reply(500)
    reply = admin.post("/v1/jobs", webhook(receiver, 1, max_attempts=2, backoff_seconds=1))
    assert reply.status == 202, reply
    job_id = reply.body["job_id"]
    dead = admin.wait_for_job(job_id, {"dead"}, timeout=90)
    assert dead["attempts"] == 2 and dead["error"]["code"] == "http_500"
    wait_for(lambda: queue_row(operator)["dlq_depth"] == 1 or None, 30, "the DLQ to hold the dead letter")

    # WHEN it is peeked twice THEN it is there both times, and still in the DLQ
    for _ in range(2):
        page = admin.get(f"{PEEK}?job_id={job_id}")
        assert page.status == 200, page
        [letter] = page.body["items"]
        assert letter["job_id"] == job_id and letter["attempts"] == 2 and letter["type"] == "webhook"
        assert letter["last_error"]["code"] == "http_500" and letter["message_id"]
        assert queue_row(operator)["dlq_depth"] == 1
    assert len(receiver.requests) == 2

    # WHEN the receiver is fixed and the dead letters are redriven
    receiver.default = Reply(200)
    mark = len(receiver.requests)
    started = admin.post(REDRIVE, {})
    assert started.status == 202 and started.body["to_move"] == 1, started
    done = wait_redrive(admin, started.body["redrive_id"])
    assert (done["status"], done["moved"]) == ("completed", 1)

    # THEN the job runs again from attempt 1 and completes, the DLQ is empty, one delivery arrived
    job = admin.wait_for_job(job_id, {"completed"}, timeout=60)
    assert job["attempts"] == 1
    wait_for(lambda: queue_row(operator)["dlq_depth"] == 0 or None, 30, "the DLQ to be empty")
    assert admin.get(PEEK).body["items"] == []
    time.sleep(2)  # nothing else arrives late
    assert deliveries_since(receiver, mark) == Counter({job_id: 1})


def test_a_redrive_by_job_id_moves_only_that_dead_letter(low_queue, admin, operator, receiver):
    receiver.default = Reply(400)  # fatal: dead after one attempt
    ids = [admin.post("/v1/jobs", webhook(receiver, n)).body["job_id"] for n in range(2)]
    for job_id in ids:
        admin.wait_for_job(job_id, {"dead"}, timeout=60)
    receiver.default = Reply(200)
    mark = len(receiver.requests)
    started = admin.post(REDRIVE, {"job_id": ids[0]})
    assert started.status == 202 and started.body["to_move"] == 1, started
    assert wait_redrive(admin, started.body["redrive_id"])["moved"] == 1
    assert admin.wait_for_job(ids[0], {"completed"}, timeout=60)["attempts"] == 1
    assert admin.get(f"/v1/jobs/{ids[1]}").body["status"] == "dead"
    assert [item["job_id"] for item in admin.get(PEEK).body["items"]] == [ids[1]]
    wait_for(lambda: queue_row(operator)["dlq_depth"] == 1 or None, 30, "the other dead letter in the DLQ")
    time.sleep(1)
    assert deliveries_since(receiver, mark) == Counter({ids[0]: 1})


def test_a_dry_run_counts_and_moves_nothing(low_queue, admin, operator, receiver):
    with WebhookReceiver(default=Reply(404)) as gone:
        receiver.default = Reply(400)
        ids = [admin.post("/v1/jobs", webhook(r, n)).body["job_id"] for n, r in enumerate([receiver, gone, gone])]
        for job_id in ids:
            admin.wait_for_job(job_id, {"dead"}, timeout=60)
    wait_for(lambda: queue_row(operator)["dlq_depth"] == 3 or None, 30, "three dead letters")
    by_code = admin.post(REDRIVE, {"error_code": "http_404", "dry_run": True})
    assert by_code.status == 200 and by_code.body["to_move"] == 2 and by_code.body["moved"] == 0, by_code
    assert admin.post(REDRIVE, {"dry_run": True}).body["to_move"] == 3
    assert operator.post(REDRIVE, {"dry_run": True}).body["to_move"] == 3  # the whole DLQ
    assert len(admin.get(PEEK).body["items"]) == 3 and queue_row(operator)["dlq_depth"] == 3
    assert {admin.get(f"/v1/jobs/{job_id}").body["status"] for job_id in ids} == {"dead"}


def test_the_cli_redrives_500_dead_letters_with_progress_and_none_twice(low_queue, admin, operator, receiver):
    receiver.default = Reply(400)  # fatal at once: 500 dead letters quickly
    run = uuid.uuid4().hex[:8]
    with ThreadPoolExecutor(max_workers=16) as pool:
        ids = set(pool.map(lambda n: create(admin, webhook(receiver, n), f"ops-{run}-{n}"), range(500)))
    assert len(ids) == 500
    # Generous: a worker killed mid-batch (a redeploy) gives its batch back after the 180 s visibility.
    wait_for(lambda: queue_row(operator)["dlq_depth"] >= 500 or None, 420, "500 dead letters", interval=1)
    wait_for(lambda: ids <= dead_letter_ids(operator) or None, 420, "our 500 in the ledger", interval=2)
    receiver.default = Reply(200)
    mark = len(receiver.requests)

    # The CLI as a user runs it: stack.json's operator token, the whole queue, a rate cap.
    herald = Path(sys.executable).parent / "herald"
    result = subprocess.run(
        [str(herald), "dlq", "redrive", QUEUE, "--max-per-second", "100", "--poll-interval", "0.5"],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith("HERALD_")},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    progress = [line for line in result.stderr.splitlines() if "msg/s" in line or "%" in line]
    assert len(progress) >= 2, result.stderr  # it showed progress while it ran
    # Every dead letter of the queue moved: ours, and any an earlier, aborted run left behind.
    moved = re.search(r"completed: moved (\d+) of (\d+) ", result.stdout)
    assert moved and int(moved[1]) == int(moved[2]) >= 500, result.stdout

    def all_delivered() -> Counter[str] | None:
        got = deliveries_since(receiver, mark)
        return got if len(got) >= 500 else None

    delivered = wait_for(all_delivered, 420, "500 deliveries", interval=1)
    time.sleep(3)  # a duplicate would arrive now
    delivered = deliveries_since(receiver, mark)
    assert set(delivered) == ids and set(delivered.values()) == {1}
    assert not ids & dead_letter_ids(operator)
    sample = sorted(ids)[:25]
    assert {admin.get(f"/v1/jobs/{job_id}").body["status"] for job_id in sample} == {"completed"}
