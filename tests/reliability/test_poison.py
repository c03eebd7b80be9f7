"""Poison messages put straight on a queue, interleaved with good jobs in the same SendMessageBatch.

Each poison message (malformed, not an object, unknown envelope version, incomplete, oversized,
naming another organization, naming an unknown job, a type that is not the job's) must land in the
queue's DLQ once, with its reason (`error_code`, `error_message` attributes), at its first receive;
the good jobs of its batch must complete at their first attempt, well before the visibility
timeout (a poison message that failed its batch would hold them back 180 s), and run once.
A job named by a forged envelope never runs through it.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

from chalicelib.clock import iso, utcnow
from chalicelib.jobs.model import Job
from tests.reliability.harness import SETTINGS, CountingReceiver, Jobs, Tenant, size
from tests.reliability.report import ReliabilityReport

pytestmark = pytest.mark.reliability

PRIORITY = "critical"  # a queue of its own: the fault run uses high and low, the redrive test normal
ROUNDS = size(1, 5)
DEADLINE_S = 90.0  # well under the 180 s visibility timeout a failed batch would wait


@pytest.fixture
def counting_receiver() -> Iterator[CountingReceiver]:
    receiver = CountingReceiver()
    receiver.start()
    yield receiver
    receiver.stop()


def envelope(job_id: str, org_id: str, job_type: str, marker: str, **extra: Any) -> str:
    body = {
        "v": 1,
        "job_id": job_id,
        "org_id": org_id,
        "type": job_type,
        "attempt": 0,
        "run_at": iso(utcnow()),
        "correlation_id": marker,
        **extra,
    }
    return json.dumps(body)


def poison_messages(marker: str, own: Tenant, other: Tenant, forged: Job) -> dict[str, tuple[str, str]]:
    """name -> (body, the error code the worker must give it). Every body holds the marker."""
    return {
        "malformed": (f"not json at all {marker}", "malformed_envelope"),
        "not an object": (json.dumps([marker]), "malformed_envelope"),
        "unknown version": (json.dumps({"v": 99, "job_id": marker, "org_id": own.org_id}), "unknown_envelope_version"),
        "incomplete": (json.dumps({"v": 1, "job_id": marker}), "malformed_envelope"),
        "oversized": (envelope(forged.job_id, own.org_id, "webhook", marker, pad="x" * 5000), "oversized_envelope"),
        # the job is own's: an envelope naming another organization must not reach it
        "wrong org": (envelope(forged.job_id, other.org_id, "webhook", marker), "job_not_found"),
        "unknown job": (envelope(f"job_{uuid.uuid4().hex}", own.org_id, "webhook", marker), "job_not_found"),
        "type mismatch": (envelope(forged.job_id, own.org_id, "sms", marker), "envelope_mismatch"),
    }


def scan_dlq(jobs: Jobs, marker: str, expected: int, deadline: float) -> list[dict[str, Any]]:
    """The DLQ messages whose body holds `marker` (deleted once read: they are this test's).
    Other messages are held during the scan and released at its end, so each pass sees all."""
    url = jobs.queue.url_of(SETTINGS.dlq_name(PRIORITY))
    found: list[dict[str, Any]] = []
    while len(found) < expected and time.monotonic() < deadline:
        held: list[str] = []
        try:
            while True:
                messages = jobs.sqs.receive_message(
                    QueueUrl=url,
                    MaxNumberOfMessages=10,
                    VisibilityTimeout=60,
                    WaitTimeSeconds=1,
                    MessageAttributeNames=["All"],
                    AttributeNames=["All"],
                ).get("Messages", [])
                if not messages:
                    break
                for message in messages:
                    if marker in message["Body"]:
                        found.append(message)
                        jobs.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
                    else:
                        held.append(message["ReceiptHandle"])
        finally:
            for start in range(0, len(held), 10):
                jobs.sqs.change_message_visibility_batch(
                    QueueUrl=url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": r, "VisibilityTimeout": 0}
                        for i, r in enumerate(held[start : start + 10])
                    ],
                )
        if len(found) < expected:
            time.sleep(1)
    return found


def test_poison_messages_go_to_the_dlq_with_a_reason_and_do_not_block_their_batch(
    tenants: Callable[[str], Tenant],
    jobs: Jobs,
    counting_receiver: CountingReceiver,
    reliability_report: ReliabilityReport,
) -> None:
    own, other = tenants("rel-poison"), tenants("rel-poison-other")
    marker = f"poison-{uuid.uuid4().hex}"
    url = counting_receiver.url
    # A job only forged envelopes name: due in an hour, so its own message does not run it now.
    forged = jobs.new(own.org_id, "webhook", {"url": url, "body": {"forged": True}}, priority=PRIORITY)
    forged.status, forged.run_at = "scheduled", utcnow() + timedelta(hours=1)
    jobs.store.create(forged)
    poison = poison_messages(marker, own, other, forged)
    good: list[Job] = []
    sent_at = time.monotonic()
    for round_ in range(ROUNDS):
        bodies = [body for body, _ in poison.values()]
        # two batches of ten: good, poison, good, poison, ... then the rest good
        items: list[Job | str] = []
        while bodies or len(items) < 20:
            job = jobs.new(
                own.org_id, "webhook", {"url": url, "body": {"round": round_, "n": len(good)}}, priority=PRIORITY
            )
            good.append(job)
            items.append(job)
            if bodies:
                items.append(bodies.pop(0))
        jobs.send_batch(PRIORITY, items)
    deadline = sent_at + DEADLINE_S
    statuses = jobs.wait_final(own.org_id, [job.job_id for job in good], deadline, interval=1.0)
    took = time.monotonic() - sent_at
    found = scan_dlq(jobs, marker, len(poison) * ROUNDS, deadline)

    records = jobs.records(own.org_id, [job.job_id for job in good])
    successes = counting_receiver.successes()
    completed = [j for j, r in records.items() if r is not None and r.status == "completed" and r.attempts == 1]
    duplicated = sum(n - 1 for j, n in successes.items() if n > 1)
    codes = sorted(
        m["MessageAttributes"]["error_code"]["StringValue"]
        for m in found
        if "error_code" in m.get("MessageAttributes", {})
    )
    with_reason = [m for m in found if m.get("MessageAttributes", {}).get("error_message", {}).get("StringValue")]
    reliability_report.record(
        "poison messages",
        jobs_injected=len(good) + len(poison) * ROUNDS,
        faults_injected=len(poison) * ROUNDS,
        completed=len(completed),
        dead_with_reason=len(with_reason),
        lost=(len(good) - len(completed)) + (len(poison) * ROUNDS - len(found)),
        duplicated_effects=duplicated,
        note=f"{len(poison)} kinds x {ROUNDS} interleaved with {len(good)} good jobs on {PRIORITY}; "
        f"good jobs all done in {took:.1f} s; DLQ reasons: {sorted(set(codes))}",
    )

    assert all(statuses.get(job.job_id) == "completed" for job in good), statuses
    assert len(completed) == len(good), "a good job needed more than one attempt: its batch was held back"
    assert all(successes.get(job.job_id) == 1 for job in good) and not duplicated
    assert len(found) == len(poison) * ROUNDS, f"poison in the DLQ: {len(found)} of {len(poison) * ROUNDS}"
    expected = sorted(code for _, code in poison.values() for _ in range(ROUNDS))
    assert codes == expected
    # The reason attributes are the worker's (SQS's own maxReceiveCount redrive adds none): each
    # was dead-lettered at its first receive, within the deadline.
    assert len(with_reason) == len(found)
    # The forged envelopes never ran the job they named.
    assert forged.job_id not in counting_receiver.successes() and not counting_receiver.requests_for(forged.job_id)
    assert jobs.store.get(own.org_id, forged.job_id).status == "scheduled"  # type: ignore[union-attr]
    jobs.store.cancel(own.org_id, forged.job_id)
