"""2. Fan-out: a digest run to 10,000 synthetic recipients vs raw SendMessageBatch of 10,000 messages.

Herald: the `digest` job handler (`chalicelib/digests/runner.py` DigestFanout, what the worker
runs for `POST /v1/digests/run`), in this process, for one organization whose 10,000 recipients
all take the daily digest: it reads them in pages, writes one `digest_email` job record per
recipient (conditional PutItem), journals its progress, and sends the messages with
SendMessageBatch, ten per call. A run is cut into invocations of at most 15 s (`Deferred`), as in
the worker; the benchmark calls it again until it is done (the SQS hop between two invocations
is not timed). Everything lands in a scratch table and a scratch queue, deleted afterwards.

Baseline: the same number of messages of the same shape (`JobQueue.batch_entry`), sent with raw
SendMessageBatch, ten per call, one after the other, to another scratch queue.

Figures: messages per second end to end (ratio to the baseline), and SQS calls counted with
botocore hooks (the floor is one call per ten recipients).
"""

from __future__ import annotations

import math
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from bench.cloud import Stack, client, herald_services, queue_counts, scratch_queue, scratch_table
from bench.harness import CallCounter, Figure, check, say

ORG = "bench-fanout"
ZONES = (
    "UTC",
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Los_Angeles",
    "America/Sao_Paulo",
    "Europe/London",
    "Europe/Paris",
    "Europe/Berlin",
    "Africa/Johannesburg",
    "Asia/Kolkata",
    "Asia/Singapore",
    "Asia/Tokyo",
    "Australia/Sydney",
    "Pacific/Auckland",
)
LOW_QUEUE = "herald-local-low"  # digest emails go to the low-priority queue
PERIOD = "2026-01-01"  # the synthetic jobs' digest period (the baseline's and the raw writes')


def seed(table: str, n: int) -> None:
    from chalicelib.recipients import Recipient, RecipientStore

    store = RecipientStore(client("dynamodb"), table)
    recipients = [
        Recipient(
            user_id=f"user-{i:06d}", email=f"user{i}@example.com", timezone=ZONES[i % len(ZONES)], digests=("daily",)
        )
        for i in range(n)
    ]
    chunks = [recipients[i : i + 500] for i in range(0, n, 500)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda chunk: store.put_many(ORG, chunk), chunks))


def _digest_jobs(org: str, n: int, now: datetime) -> list[Any]:
    """N `digest_email` jobs as the digest fan-out writes them (its ids, type, priority, payload shape)."""
    from chalicelib.clock import iso
    from chalicelib.digests.runner import EMAIL_PRIORITY, EMAIL_TYPE, digest_job_id
    from chalicelib.jobs.model import Job

    return [
        Job(
            job_id=digest_job_id("daily", PERIOD, f"user-{i:06d}"),
            org_id=org,
            type=EMAIL_TYPE,
            status="queued",
            priority=EMAIL_PRIORITY,
            created_at=now,
            run_at=now,
            correlation_id=uuid.uuid4().hex,
            payload={
                "user_id": f"user-{i:06d}",
                "email": f"user{i}@example.com",
                "timezone": "UTC",
                "kind": "daily",
                "period": PERIOD,
                "window_start": iso(now),
                "window_end": iso(now),
                "summary": {"alerts_sent": 0, "alerts_failed": 0, "by_alert_type": {}},
            },
        )
        for i in range(n)
    ]


def herald(table: str, queue_url: str, n: int) -> tuple[float, CallCounter, dict[str, Any]]:
    from chalicelib.clock import iso
    from chalicelib.digests.runner import DigestFanout, ProgressStore
    from chalicelib.errors import Deferred
    from chalicelib.jobs.model import Job, new_job_id
    from chalicelib.jobs.service import JobService
    from chalicelib.jobs.store import JobStore
    from chalicelib.recipients import RecipientStore

    counter = CallCounter()
    svc = herald_services(counter, redirect={LOW_QUEUE: queue_url})
    store = JobStore(svc.ddb, table)
    fanout = DigestFanout(
        store,
        RecipientStore(svc.ddb, table),
        JobService(store, svc.queue),
        svc.queue,
        svc.sqs,
        ProgressStore(svc.ddb, table),
        lambda: [ORG],
    )
    now = datetime.now(UTC)
    parent = Job(
        job_id=new_job_id(),
        org_id=ORG,
        type="digest",
        status="active",
        priority="normal",
        created_at=now,
        run_at=now,
        payload={"kind": "daily", "mode": "now", "at": iso(now)},
        attempts=1,
        correlation_id=uuid.uuid4().hex,
    )
    invocations = 0
    started = time.perf_counter()
    with counter.in_phase("fanout"):
        while True:
            invocations += 1
            try:
                result = fanout(parent)
                break
            except Deferred:  # one invocation's budget spent: the worker would run it again
                check(invocations < 100, "fan-out: more than 100 invocations; it is not making progress")
    seconds = time.perf_counter() - started
    check(result.get("jobs_created") == n, f"fan-out: {result.get('jobs_created')} of {n} digest jobs created")
    check(result.get("messages_sent") == n, f"fan-out: {result.get('messages_sent')} of {n} messages sent")
    visible, in_flight, delayed = queue_counts(queue_url)
    check(visible + in_flight + delayed == n, f"fan-out: the queue holds {visible + delayed} messages, not {n}")
    return seconds, counter, {**result, "invocations": invocations}


def baseline(queue_url: str, n: int) -> float:
    from chalicelib.config import settings
    from chalicelib.jobs.queue import JobQueue

    queue = JobQueue(client("sqs"), settings())
    entries = [queue.batch_entry(job, f"m{i}") for i, job in enumerate(_digest_jobs(ORG, n, datetime.now(UTC)))]
    sqs = client("sqs")
    started = time.perf_counter()
    for start in range(0, n, 10):
        response = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries[start : start + 10])
        check(not response.get("Failed"), f"fan-out baseline: failed entries {response.get('Failed')}")
    seconds = time.perf_counter() - started
    visible, in_flight, delayed = queue_counts(queue_url)
    check(visible + in_flight + delayed == n, f"fan-out baseline: the queue holds {visible} messages, not {n}")
    return seconds


def raw_writes(table: str, n: int) -> float:
    """Seconds for n conditional PutItem of digest-job-sized items, 16 at a time (the emulator's pace)."""
    from chalicelib.jobs.store import JobStore

    store = JobStore(client("dynamodb"), table)
    jobs = _digest_jobs("bench-raw", n, datetime.now(UTC))
    started = time.perf_counter()
    written = store.create_many(jobs, max_workers=16)
    check(len(written) == n, f"fan-out: raw writes: {len(written)} of {n} written")
    return time.perf_counter() - started


def run(stack: Stack, recipients: int) -> list[Figure]:
    n = recipients
    with scratch_table("fanout") as table, scratch_queue("fanout") as herald_url, scratch_queue("raw") as raw_url:
        began = time.perf_counter()
        seed(table, n)
        say(f"fan-out: seeded {n} recipients in {time.perf_counter() - began:.1f} s")
        raw_s = baseline(raw_url, n)
        say(f"fan-out: baseline: {n} messages with raw SendMessageBatch in {raw_s:.1f} s ({n / raw_s:.0f} msg/s)")
        seconds, counter, result = herald(table, herald_url, n)
        sample = max(200, n // 5)
        write_s = raw_writes(table, sample) * n / sample
        say(
            f"fan-out: reference: {n} conditional PutItem, 16 at a time, take {write_s:.1f} s here "
            f"(measured on {sample})"
        )
    tally = counter.phases["fanout"]
    sqs_calls = tally.total("sqs")
    sends = tally.calls.get("sqs.SendMessageBatch", 0)
    ddb_s = sum(s for key, s in tally.seconds.items() if key.startswith("dynamodb."))
    sqs_s = sum(s for key, s in tally.seconds.items() if key.startswith("sqs."))
    puts = tally.calls.get("dynamodb.PutItem", 0)
    say(
        f"fan-out: Herald {n} recipients in {seconds:.1f} s ({n / seconds:.0f} msg/s), "
        f"{result['invocations']} invocations; calls {dict(tally.calls)}; "
        f"time in SQS calls {sqs_s:.1f} s, in DynamoDB calls {ddb_s:.1f} s (summed over threads)"
    )
    floor = math.ceil(n / 10)
    return [
        Figure(
            f"fan-out enqueue, SQS sends ({n:,} recipients)",
            n / sqs_s,
            "msg/s",
            n / raw_s,
            goal="ratio >= 0.8",
            note="Herald's SendMessageBatch phase (send_in_batches over JobQueue.batch_entry) vs raw SendMessageBatch",
        ),
        Figure(
            f"fan-out whole digest run ({n:,} recipients)",
            n / seconds,
            "msg/s",
            n / raw_s,
            goal="ratio >= 0.8",
            note=f"read recipients + {puts:,} PutItem (one conditional job record per recipient, 16 at a time) + "
            f"journal + sends, {result['invocations']} invocations of <= 15 s; the same {n:,} PutItem alone take "
            f"{write_s:.0f} s on this DynamoDB Local, the sends {sqs_s:.1f} s, the whole run {seconds:.0f} s",
        ),
        Figure(
            f"fan-out SQS calls ({n:,} recipients)",
            float(sqs_calls),
            "calls",
            float(floor),
            goal=f"value <= {floor + 10}",
            note=f"{sends} SendMessageBatch of 10; the floor is one call per 10 messages",
        ),
    ]
