"""1. Pipeline throughput: N webhook jobs through the deployed workers vs raw SQS through a no-op Lambda.

Herald: N webhook jobs (to a local no-op HTTP server) are enqueued through the queue layer
(`JobService.enqueue`, as the API does) with a common run_at a little in the future, so that
they all become visible together: a backlog. The deployed `worker_normal` drains it; the figure
is N / (last finished_at - first started_at), read from the job records once every one of them
is `completed` (each is checked, and the server must have received each job exactly once).

Baseline: the same number of raw messages (same body size and attributes) through a no-op
Lambda (python3.11, same memory) with the same event source mapping settings (batch 10, no
batching window, ReportBatchItemFailures), on a scratch queue, same backlog trick; the figure is
N / (drained - first receive), watched on the queue's counters every 50 ms.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from bench import jobs as job_records
from bench.cloud import (
    BENCH_ORG,
    Stack,
    client,
    delete_items,
    event_source,
    herald_mapping,
    herald_services,
    job_keys,
    noop_function,
    queue_counts,
    scratch_queue,
)
from bench.harness import BenchFailure, Figure, check, say

ENQUEUE_THREADS = 8
POLL_S = 0.05


def _lead_seconds(n: int) -> int:
    # Enough for the enqueue to finish before the backlog becomes visible (measured: 100+ jobs/s
    # with 8 threads on this machine; 30/s assumed here), capped by SQS's 900 s.
    return min(900, 8 + math.ceil(n / 30))


def herald(stack: Stack, n: int) -> tuple[float, dict[str, float]]:
    from chalicelib.jobs.service import NewJob
    from tests.contract.webhook_receiver import WebhookReceiver

    svc = herald_services()
    mapping = herald_mapping(stack.function("worker_normal"))
    check(
        mapping.get("BatchSize") == 10 and mapping.get("FunctionResponseTypes") == ["ReportBatchItemFailures"],
        f"worker_normal's event source mapping is not batch 10 + ReportBatchItemFailures: {mapping}",
    )
    receiver = WebhookReceiver().start()
    job_ids: list[str] = []
    try:
        lead = _lead_seconds(n)
        visible_at = time.time() + lead
        lock = threading.Lock()

        def enqueue(i: int) -> None:
            delay = max(1, math.ceil(visible_at - time.time()))
            job, created = svc.jobs.enqueue(
                NewJob(
                    org_id=BENCH_ORG,
                    type="webhook",
                    payload={"url": receiver.url, "body": {"bench": "pipeline", "i": i}},
                    priority="normal",
                    delay_seconds=delay,
                )
            )
            check(created, "enqueue returned an existing job")
            with lock:
                job_ids.append(job.job_id)

        say(f"pipeline: enqueueing {n} webhook jobs (visible together in {lead} s)")
        started = time.time()
        with ThreadPoolExecutor(ENQUEUE_THREADS) as pool:
            list(pool.map(enqueue, range(n)))
        enqueued = time.time()
        check(len(job_ids) == n, f"only {len(job_ids)} of {n} jobs were enqueued")
        say(f"pipeline: enqueued {n} in {enqueued - started:.1f} s ({n / (enqueued - started):.0f} jobs/s)")
        if enqueued > visible_at - 1:
            say("pipeline: warning: the enqueue ran past the visibility time (the backlog was still filling)")

        def all_final() -> bool:
            states = job_records.statuses(BENCH_ORG, job_ids)
            return all(states.get(j) in ("completed", "dead", "cancelled") for j in job_ids)

        allowed = max(180.0, n / 5)
        deadline = time.monotonic() + (visible_at - time.time()) + allowed
        while not all_final():
            if time.monotonic() > deadline:
                states = job_records.statuses(BENCH_ORG, job_ids)
                raise BenchFailure(
                    f"pipeline: not every job finished within {allowed:.0f} s of becoming visible: "
                    + job_records.summary(states, job_ids)
                )
            time.sleep(2)
        records = job_records.records(BENCH_ORG, job_ids)
        states = {j: r["status"] for j, r in records.items()}
        completed = [j for j in job_ids if states.get(j) == "completed"]
        check(
            len(completed) == n,
            f"pipeline: {len(completed)} of {n} jobs completed ({job_records.summary(states, job_ids)})",
        )
        time.sleep(0.5)  # the last request is recorded before the worker's reply is read
        seen = Counter(r.headers.get("webhook-id") for r in receiver.requests)
        missing = [j for j in job_ids if seen.get(j, 0) == 0]
        check(not missing, f"pipeline: {len(missing)} completed jobs never reached the server, e.g. {missing[:3]}")
        duplicates = sum(c - 1 for j, c in seen.items() if j in set(job_ids) and c > 1)
        first = min(r["started_at"] for r in records.values())
        last = max(r["finished_at"] for r in records.values())
        retries = sum(1 for r in records.values() if r["attempts"] > 1)
        rate = n / (last - first)
        say(
            f"pipeline: Herald {n} jobs in {last - first:.1f} s = {rate:.1f} jobs/s "
            f"(first start {first - visible_at:+.1f} s after visible; {retries} retried, {duplicates} duplicate deliveries)"
        )
        return rate, {"seconds": last - first, "retried": retries, "duplicates": duplicates}
    finally:
        receiver.stop()
        if job_ids:
            delete_items("herald-local", job_keys(BENCH_ORG, job_ids))


def baseline(n: int) -> tuple[float, dict[str, float]]:
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
                {"Id": str(i), "MessageBody": body, "DelaySeconds": delay, "MessageAttributes": attributes,
                 "MessageGroupId": BENCH_ORG}
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
        return rate, {"seconds": drained - first_receive}


def run(stack: Stack, n: int) -> list[Figure]:
    base_rate, _ = baseline(n)
    rate, info = herald(stack, n)
    return [
        Figure(
            "pipeline throughput (webhook jobs)",
            rate,
            "jobs/s",
            base_rate,
            goal="ratio >= 0.8",
            note=f"N={n}; baseline: raw SQS -> no-op Lambda, same ESM settings; "
            f"{int(info['retried'])} retried, {int(info['duplicates'])} duplicate deliveries",
        )
    ]
