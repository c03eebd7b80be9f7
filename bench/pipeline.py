"""1. Pipeline throughput: N webhook jobs through the deployed workers vs raw SQS through a no-op Lambda.

Herald: N webhook jobs (to a local no-op HTTP server) are enqueued through the queue layer
(records with `JobStore.create_many`, due now; then messages with `JobQueue.batch_entry` +
`send_in_batches`, as the digest fan-out does), each message with the DelaySeconds that makes
them all visible at one instant a few seconds later: a backlog. The deployed `worker_normal` drains it; the figure
is N / (last finished_at - first started_at), read from the job records once every one of them
is `completed` (each is checked, and the server must have received each job exactly once).

Baseline: the same number of raw messages (same body size and attributes) through a no-op
Lambda (python3.11, same memory) with the same event source mapping settings (batch 10, no
batching window, ReportBatchItemFailures), on a scratch queue, same backlog trick; the figure is
N / (drained - first receive), watched on the queue's counters every 50 ms.
"""

from __future__ import annotations

import itertools
import json
import math
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from bench import jobs as job_records
from bench.cloud import (
    BENCH_ORG,
    VISIBILITY_TIMEOUT_S,
    Stack,
    client,
    event_source,
    herald_mapping,
    herald_services,
    noop_function,
    queue_counts,
    scratch_queue,
)
from bench.harness import BenchFailure, Figure, check, say

POLL_S = 0.05


def _jobs(n: int, url: str, run_at: datetime) -> list[Any]:
    """N webhook jobs as `JobService.enqueue` builds them (status queued), all due at `run_at`."""
    from chalicelib.jobs.model import Job, new_job_id
    from chalicelib.jobs.types import DEFAULTS

    attempts, backoff = DEFAULTS["webhook"]
    now = datetime.now(UTC)
    return [
        Job(
            job_id=new_job_id(),
            org_id=BENCH_ORG,
            type="webhook",
            status="queued",
            priority="normal",
            created_at=now,
            run_at=run_at,
            payload={"url": url, "body": {"bench": "pipeline", "i": i}},
            max_attempts=attempts,
            backoff_seconds=backoff,
            correlation_id=uuid.uuid4().hex,
        )
        for i in range(n)
    ]


class _Timed:
    """An SQS client whose SendMessageBatch entries get their DelaySeconds set at send time."""

    def __init__(self, sqs: Any, adjust: Any) -> None:
        self._sqs = sqs
        self._adjust = adjust

    def send_message_batch(self, *, QueueUrl: str, Entries: list[dict[str, Any]]) -> Any:
        return self._sqs.send_message_batch(QueueUrl=QueueUrl, Entries=self._adjust(Entries))


def herald(stack: Stack, n: int) -> tuple[float, dict[str, float]]:
    """(jobs/s, {retried, duplicates, inside_ms, per_job_ms})."""
    from chalicelib.digests.fanout import send_in_batches
    from tests.contract.webhook_receiver import WebhookReceiver

    svc = herald_services()
    mapping = herald_mapping(stack.function("worker_normal"))
    check(
        mapping.get("BatchSize") == 10 and mapping.get("FunctionResponseTypes") == ["ReportBatchItemFailures"],
        f"worker_normal's event source mapping is not batch 10 + ReportBatchItemFailures: {mapping}",
    )
    receiver = WebhookReceiver().start()
    try:
        # Records first (as every enqueue does), all due now; then the messages, each with the
        # DelaySeconds that makes them all visible at one instant: the worker faces a backlog of N.
        jobs = _jobs(n, receiver.url, datetime.now(UTC))
        job_ids = [job.job_id for job in jobs]
        say(f"pipeline: enqueueing {n} webhook jobs through the queue layer")
        started = time.time()
        created = svc.store.create_many(jobs, max_workers=16)
        check(len(created) == n, f"pipeline: only {len(created)} of {n} job records were written")
        written = time.time()
        lead = 5 + math.ceil(n / 200)
        visible_at = time.time() + lead
        entries = [svc.queue.batch_entry(job, f"m{i}") for i, job in enumerate(jobs)]

        def on_time(batch: list[Any]) -> list[Any]:
            delay = max(0, math.ceil(visible_at - time.time()))
            return [{**entry, "DelaySeconds": delay} for entry in batch]

        report = send_in_batches(_Timed(svc.sqs, on_time), svc.queue.queue_url("normal"), entries)
        check(report.ok and report.sent == n, f"pipeline: {report.sent} of {n} messages sent: {report.failed[:3]}")
        enqueued = time.time()
        say(
            f"pipeline: enqueued {n} in {enqueued - started:.1f} s (records {written - started:.1f} s, "
            f"messages {enqueued - written:.1f} s), visible together {visible_at - enqueued:.1f} s later"
        )
        check(enqueued < visible_at - 0.5, "pipeline: sending the messages took longer than the lead time")

        # A batch in flight when someone redeploys the worker is cancelled: its messages come
        # back after the visibility timeout. Wait for them, then say the run was disturbed.
        allowed = max(120.0, n / 5) + VISIBILITY_TIMEOUT_S
        records = job_records.wait_final(
            BENCH_ORG,
            job_ids,
            (visible_at - time.time()) + allowed,
            f"the pipeline's {n} webhook jobs to finish ({allowed:.0f} s allowed once visible)",
        )
        states = job_records.statuses_of(records)
        completed = [j for j in job_ids if states.get(j) == "completed"]
        check(
            len(completed) == n,
            f"pipeline: {len(completed)} of {n} jobs completed ({job_records.summary(states, job_ids)})",
        )
        time.sleep(0.5)  # the server records a request before it answers: let the last ones land
        seen = Counter(r.headers.get("webhook-id") for r in receiver.requests)
        missing = [j for j in job_ids if seen.get(j, 0) == 0]
        check(not missing, f"pipeline: {len(missing)} completed jobs never reached the server, e.g. {missing[:3]}")
        wanted = set(job_ids)
        duplicates = sum(c - 1 for j, c in seen.items() if j in wanted and c > 1)
        finishes = sorted(r["finished_at"] for r in records.values())
        gap = max((b - a for a, b in itertools.pairwise(finishes)), default=0.0)
        check(
            gap < 30,
            f"pipeline: the run was disturbed: no job finished for {gap:.0f} s in the middle of it (a redeploy of "
            "the worker cancels its in-flight batch, whose messages return after the visibility timeout); rerun",
        )
        first = min(r["started_at"] for r in records.values())
        last = finishes[-1]
        retries = sum(1 for r in records.values() if r["attempts"] > 1)
        rate = n / (last - first)
        inside_ms = sum(r["finished_at"] - r["started_at"] for r in records.values()) / n * 1000
        per_job_ms = (last - first) / n * 1000
        say(
            f"pipeline: where the time goes: each job spends {inside_ms:.0f} ms between its start and its "
            f"completion (the webhook POST and the completing write); the run takes {per_job_ms:.0f} ms of "
            f"wall time per job, as a batch's records run {inside_ms / per_job_ms:.1f} at a time on average"
        )
        say(
            f"pipeline: Herald {n} jobs in {last - first:.1f} s = {rate:.1f} jobs/s (first start "
            f"{first - visible_at:+.1f} s after visible; {retries} retried, {duplicates} duplicate deliveries)"
        )
        return rate, {"retried": retries, "duplicates": duplicates, "inside_ms": inside_ms, "per_job_ms": per_job_ms}
    finally:
        # The job records stay (in the bench organization, expiring by TTL on AWS): deleting them
        # while a message could still come back would turn it into a poison message in the DLQ.
        receiver.stop()


def baseline(n: int) -> float:
    """Messages/s of raw SQS through a no-op Lambda."""
    sqs = client("sqs")
    body = json.dumps(
        {
            "v": 1,
            "job_id": "job_" + "0" * 32,
            "org_id": BENCH_ORG,
            "type": "webhook",
            "attempt": 0,
            "run_at": datetime.now(UTC).isoformat(),
            "correlation_id": "0" * 32,
        },
        separators=(",", ":"),
    )
    attributes = {
        name: {"DataType": "String", "StringValue": value}
        for name, value in (("org_id", BENCH_ORG), ("type", "webhook"), ("job_id", "job_" + "0" * 32))
    }
    with scratch_queue("pipeline") as url, noop_function("noop") as function, event_source(function, url):
        lead = 6 + math.ceil(n / 500)
        visible_at = time.time() + lead
        say(f"pipeline: baseline: {n} raw messages to a no-op Lambda (visible together in {lead} s)")
        for start in range(0, n, 10):
            delay = max(1, math.ceil(visible_at - time.time()))
            entries = [
                {
                    "Id": str(i),
                    "MessageBody": body,
                    "DelaySeconds": delay,
                    "MessageAttributes": attributes,
                    "MessageGroupId": BENCH_ORG,
                }
                for i in range(start, min(n, start + 10))
            ]
            response = sqs.send_message_batch(QueueUrl=url, Entries=entries)
            check(not response.get("Failed"), f"baseline: SendMessageBatch failed entries: {response.get('Failed')}")
        check(time.time() < visible_at - 0.5, "baseline: sending took longer than the lead time")
        first_receive: float | None = None
        deadline = visible_at + max(120.0, n / 5)
        while True:
            now = time.time()
            visible, in_flight, delayed = queue_counts(url)
            if first_receive is None and visible + delayed < n:
                first_receive = now
            if visible + in_flight + delayed == 0:
                drained = now
                break
            if now > deadline:
                raise BenchFailure(
                    f"baseline: the no-op Lambda did not drain the queue in time "
                    f"({visible} visible, {in_flight} in flight, {delayed} delayed)"
                )
            time.sleep(POLL_S)
        check(first_receive is not None, "baseline: never saw a receive")
        assert first_receive is not None
        rate = n / (drained - first_receive)
        say(f"pipeline: baseline {n} messages in {drained - first_receive:.1f} s = {rate:.1f} msg/s")
        return rate


def run(stack: Stack, n: int) -> list[Figure]:
    base_rate = baseline(n)
    rate, info = herald(stack, n)
    return [
        Figure(
            "pipeline throughput (webhook jobs)",
            rate,
            "jobs/s",
            base_rate,
            goal="ratio >= 0.8",
            note=f"N={n}; baseline: raw SQS -> no-op Lambda, same ESM settings; "
            f"{int(info['retried'])} retried, {int(info['duplicates'])} duplicate deliveries; "
            f"{info['per_job_ms']:.0f} ms per job, {info['inside_ms']:.0f} ms of it between begin_attempt and complete",
        )
    ]
