"""The worker's decisions, over moto and a clock we move: done, retried, dead, deferred, skipped."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chalicelib.errors import FatalError, RetryableError
from chalicelib.jobs.ledger import DeadLetterLedger
from chalicelib.jobs.model import Job
from chalicelib.jobs.queue import JobQueue
from chalicelib.jobs.service import JobService, NewJob
from chalicelib.jobs.store import JobStore
from chalicelib.jobs.worker import Worker, backoff_seconds
from chalicelib.services import Services


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Harness:
    """A worker over moto whose handlers are scripted per test."""

    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self.clock = Clock()
        self.store = JobStore(svc.ddb, svc.settings.table_name, clock=self.clock)
        self.queue = JobQueue(svc.sqs, svc.settings, clock=self.clock)
        self.jobs = JobService(self.store, self.queue, clock=self.clock)
        self.ledger = DeadLetterLedger(svc.ddb, svc.settings.table_name, clock=self.clock)
        self.effects: list[str] = []
        self.script: list[Any] = []
        self.worker = Worker(
            self.store,
            self.queue,
            self.ledger,
            {"webhook": self.handler},
            svc.settings,
            clock=self.clock,
            rng=lambda: 0.5,
        )

    def handler(self, job: Job) -> dict[str, Any]:
        outcome = self.script.pop(0) if self.script else "ok"
        if isinstance(outcome, Exception):
            raise outcome
        self.effects.append(job.job_id)
        return {"status_code": 200}

    def enqueue(self, **kw: Any) -> Job:
        job, _ = self.jobs.enqueue(NewJob(org_id="org-a", type="webhook", payload={"url": "http://x", "body": 1}, **kw))
        return job

    def receive(self, queue: str = "herald-local-normal") -> list[dict[str, Any]]:
        url = self.queue.url_of(queue)
        got = self.svc.sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"], MessageAttributeNames=["All"]
        ).get("Messages", [])
        return got

    def run(self, messages: list[dict[str, Any]], priority: str = "normal") -> dict[str, Any]:
        event = {"Records": [sqs_record(m) for m in messages]}
        return self.worker.handle_batch(event, None, priority)

    def settle(self, queue: str = "herald-local-normal", rounds: int = 40) -> None:
        """Let the worker have every visible message until none is left, as the event source
        mapping would: burial messages are handed back until SQS (moto's redrive policy,
        maxReceiveCount 12) moves them to the DLQ."""
        url = self.queue.url_of(queue)
        for _ in range(rounds):
            messages = self.receive(queue)
            if not messages:
                return
            failed = {f["itemIdentifier"] for f in self.run(messages).get("batchItemFailures", [])}
            for m in messages:
                if m["MessageId"] not in failed:
                    self.svc.sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        raise AssertionError("the queue did not settle")

    def job(self, job_id: str) -> Job:
        found = self.store.get("org-a", job_id)
        assert found is not None
        return found


def sqs_record(message: dict[str, Any]) -> dict[str, Any]:
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": message.get("Attributes", {"ApproximateReceiveCount": "1"}),
        "messageAttributes": {
            k: {"stringValue": v.get("StringValue"), "dataType": v["DataType"]}
            for k, v in message.get("MessageAttributes", {}).items()
        },
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:herald-local-normal",
        "awsRegion": "us-east-1",
    }


@pytest.fixture
def h(svc: Services) -> Harness:
    return Harness(svc)


def test_given_a_queued_job_when_processed_then_completed_with_the_result(h):
    job = h.enqueue()
    assert h.run(h.receive()) == {"batchItemFailures": []}
    done = h.job(job.job_id)
    assert done.status == "completed" and done.attempts == 1 and done.result == {"status_code": 200}
    assert h.effects == [job.job_id]


def test_given_a_redelivered_message_then_the_effect_runs_once(h):
    h.enqueue()
    messages = h.receive()
    h.run(messages)
    h.run(messages)  # SQS delivered the same message again
    assert len(h.effects) == 1


def test_given_a_cancelled_job_then_its_in_flight_message_never_runs_it(h):
    job = h.enqueue()
    messages = h.receive()
    h.store.cancel("org-a", job.job_id)
    assert h.run(messages) == {"batchItemFailures": []}
    assert h.effects == [] and h.job(job.job_id).status == "cancelled"


def test_given_a_retryable_error_then_failed_with_backoff_and_reported_as_item_failure(h):
    job = h.enqueue(backoff_seconds=10)
    h.script = [RetryableError("http_500", "boom")]
    messages = h.receive()
    response = h.run(messages)
    assert response == {"batchItemFailures": [{"itemIdentifier": messages[0]["MessageId"]}]}
    failed = h.job(job.job_id)
    assert failed.status == "failed" and failed.error["code"] == "http_500" and failed.error["retryable"]
    assert failed.run_at == h.clock.now + timedelta(seconds=7.5)  # 10 * 2^0 with jitter 0.5 -> 5 + 2.5
    assert h.receive() == []  # hidden for the backoff


def test_retry_after_from_the_error_overrides_the_backoff(h):
    job = h.enqueue()
    h.script = [RetryableError("http_429", "slow down", retry_after=42)]
    h.run(h.receive())
    assert h.job(job.job_id).run_at == h.clock.now + timedelta(seconds=42)


def test_given_max_attempts_exhausted_then_dead_in_the_dlq_and_the_ledger(h):
    job = h.enqueue(max_attempts=2)
    h.script = [RetryableError("http_500", "boom"), RetryableError("http_500", "boom again")]
    message = h.receive()
    h.run(message)
    h.run(message)  # the same message comes back after its visibility timeout
    dead = h.job(job.job_id)
    assert dead.status == "dead" and dead.attempts == 2 and "gave up after 2 attempts" in dead.error["message"]
    h.settle()  # its burial message reaches the DLQ by the queue's redrive policy
    dlq = h.receive("herald-local-normal-dlq")
    assert [json.loads(m["Body"])["job_id"] for m in dlq] == [job.job_id]
    assert dlq[0]["MessageAttributes"]["error_code"]["StringValue"] == "http_500"
    (entry,) = h.ledger.list("herald-local-normal")
    assert entry["job_id"] == job.job_id and entry["last_error"]["code"] == "http_500"


def test_given_a_fatal_error_then_dead_after_one_attempt(h):
    job = h.enqueue()
    h.script = [FatalError("http_400", "bad request")]
    assert h.run(h.receive()) == {"batchItemFailures": []}
    assert h.job(job.job_id).status == "dead" and h.job(job.job_id).attempts == 1


def test_an_unexpected_exception_is_retried_not_lost(h):
    job = h.enqueue()
    h.script = [KeyError("bug")]
    assert h.run(h.receive())["batchItemFailures"]
    assert h.job(job.job_id).error["code"] == "internal_error"


def test_given_a_long_delay_then_each_early_delivery_sends_the_next_hop_until_run_at(h, svc):
    job = h.enqueue(delay_seconds=2000)
    assert h.job(job.job_id).status == "scheduled"
    # The first hop went out with DelaySeconds=900 (moto holds it); replay its body by hand.
    body = json.dumps(
        {
            "v": 1,
            "job_id": job.job_id,
            "org_id": "org-a",
            "type": "webhook",
            "run_at": job.run_at.isoformat().replace("+00:00", "Z"),
            "attempt": 0,
        }
    )
    message = {"MessageId": "m1", "ReceiptHandle": "r1", "Body": body}
    sent: list[int] = []
    svc.sqs.meta.events.register(
        "provide-client-params.sqs.SendMessage", lambda params, **_: sent.append(params.get("DelaySeconds", 0))
    )
    for _ in range(2):  # at t+900 and t+1800 the job is not due: one more hop each time
        h.clock.advance(900)
        assert h.run([message]) == {"batchItemFailures": []}
    assert sent == [900, 200] and h.effects == [] and h.job(job.job_id).status == "scheduled"
    h.clock.advance(200)
    h.run([message])
    assert h.effects == [job.job_id] and h.job(job.job_id).status == "completed"


def test_long_delay_hop_sizes_follow_the_clock(h):
    job = h.enqueue(delay_seconds=2000)
    assert h.queue.delay_for(job.run_at) == 900
    h.clock.advance(1500)
    assert h.queue.delay_for(job.run_at) == 500
    h.clock.advance(600)
    assert h.queue.delay_for(job.run_at) == 0


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        "[]",
        json.dumps({"v": 2, "job_id": "x"}),
        json.dumps({"v": 1, "job_id": "x"}),
        json.dumps(
            {
                "v": 1,
                "job_id": "job_x",
                "org_id": "org-a",
                "type": "webhook",
                "run_at": "2026-01-01T00:00:00Z",
                "pad": "x" * 5000,
            }
        ),
    ],
)
def test_poison_messages_go_to_the_dlq_with_a_reason_and_do_not_block_the_batch(h, body):
    good = h.enqueue()
    url = h.queue.url_of("herald-local-normal")
    h.svc.sqs.send_message(QueueUrl=url, MessageBody=body)
    response = h.run(h.receive())
    assert response == {"batchItemFailures": []}
    assert h.effects == [good.job_id]
    h.settle()
    (dead,) = h.receive("herald-local-normal-dlq")
    assert dead["Body"] == body and dead["MessageAttributes"]["error_code"]["StringValue"]


def test_an_envelope_naming_another_org_never_runs_the_job(h):
    job = h.enqueue()
    (message,) = h.receive()
    forged = json.loads(message["Body"]) | {"org_id": "org-b"}
    message["Body"] = json.dumps(forged)
    h.run([message])
    assert h.effects == [] and h.job(job.job_id).status == "queued"
    h.settle()
    (dead,) = h.receive("herald-local-normal-dlq")
    assert dead["MessageAttributes"]["error_code"]["StringValue"] == "job_not_found"


def test_backoff_grows_exponentially_with_bounded_jitter():
    assert backoff_seconds(2, 1, lambda: 0.0) == 1.0
    assert backoff_seconds(2, 1, lambda: 1.0) == 2.0
    assert backoff_seconds(2, 4, lambda: 1.0) == 16.0
    assert backoff_seconds(3600, 10, lambda: 1.0) == 43_200


def test_a_fully_failed_batch_names_every_failed_message_instead_of_raising(h):
    jobs = [h.enqueue() for _ in range(3)]
    h.script = [RetryableError("http_503", "down")] * 3
    messages = h.receive()
    response = h.run(messages)
    assert sorted(f["itemIdentifier"] for f in response["batchItemFailures"]) == sorted(
        m["MessageId"] for m in messages
    )
    assert {h.job(j.job_id).status for j in jobs} == {"failed"}


class Together:
    """A handler that returns only once `n` calls are inside it at the same time."""

    def __init__(self, h: Harness, n: int, timeout: float = 10.0) -> None:
        import threading

        self.h = h
        self.barrier = threading.Barrier(n, timeout=timeout)

    def __call__(self, job: Job) -> dict[str, Any]:
        self.barrier.wait()  # BrokenBarrierError (a retry) if the records ran one after another
        self.h.effects.append(job.job_id)
        return {"status_code": 200}


def test_the_records_of_a_batch_run_concurrently_each_with_its_own_log_keys(h):
    import io
    import logging

    from chalicelib.observability import logger

    out = io.StringIO()
    capture = logging.StreamHandler(out)
    capture.setFormatter(logger.registered_formatter)  # the JSON lines Lambda would print
    logger.addHandler(capture)
    h.worker._handlers = {"webhook": Together(h, 4)}
    jobs = [h.enqueue() for _ in range(4)]
    try:
        assert h.run(h.receive()) == {"batchItemFailures": []}
    finally:
        logger.removeHandler(capture)
    assert sorted(h.effects) == sorted(j.job_id for j in jobs)
    assert {h.job(j.job_id).status for j in jobs} == {"completed"}
    logged = [json.loads(line) for line in out.getvalue().splitlines()]
    completed = [entry.get("job_id") for entry in logged if entry.get("message") == "job completed"]
    assert sorted(completed) == sorted(j.job_id for j in jobs)  # not the last record's id four times


def test_with_concurrency_1_the_records_run_one_after_another(svc):
    from dataclasses import replace

    h = Harness(Services(**{**svc.__dict__, "settings": replace(svc.settings, worker_concurrency=1)}))
    h.worker._handlers = {"webhook": Together(h, 2, timeout=0.5)}  # one after another: no need to wait 10 s
    jobs = [h.enqueue() for _ in range(2)]
    response = h.run(h.receive())
    assert len(response["batchItemFailures"]) == 2  # neither could wait for the other
    assert {h.job(j.job_id).status for j in jobs} == {"failed"}


def test_a_record_that_exits_the_process_does_so_after_the_others_finished(h):
    def handler(job: Job) -> dict[str, Any]:
        if job.payload["body"] == "exit":
            raise SystemExit(3)
        h.effects.append(job.job_id)
        return {"status_code": 200}

    h.worker._handlers = {"webhook": handler}
    others = [h.enqueue() for _ in range(3)]
    h.jobs.enqueue(NewJob(org_id="org-a", type="webhook", payload={"url": "http://x", "body": "exit"}))
    with pytest.raises(SystemExit):
        h.run(h.receive())
    assert {h.job(j.job_id).status for j in others} == {"completed"}


def test_an_attempt_whose_start_was_applied_but_not_acknowledged_is_finished_after_its_lease(h):
    """DynamoDB applied begin_attempt, its answer was lost, the SDK's retry was refused: the job is
    `active` and nobody runs it. The message must stay (hidden until the lease ends), not be dropped."""
    job = h.enqueue()
    messages = h.receive()
    lease_s = h.svc.settings.worker_timeout_s + 30
    assert h.store.begin_attempt("org-a", job.job_id, lease_s=lease_s) is not None  # the lost answer
    response = h.run(messages)
    assert [f["itemIdentifier"] for f in response["batchItemFailures"]] == [messages[0]["MessageId"]]
    assert h.job(job.job_id).status == "active" and h.effects == []
    h.clock.advance(lease_s + 1)
    assert h.run(messages) == {"batchItemFailures": []}  # the same message, back after the lease
    assert h.job(job.job_id).status == "completed" and h.effects == [job.job_id]


def test_a_duplicate_of_a_finished_job_is_dropped_without_a_retry(h):
    job = h.enqueue()
    messages = h.receive()
    assert h.run(messages) == {"batchItemFailures": []}
    assert h.run(messages) == {"batchItemFailures": []}
    assert h.effects == [job.job_id]


def test_a_due_job_starts_with_one_conditional_write_and_no_read(h, monkeypatch):
    job = h.enqueue()
    reads: list[str] = []
    original = h.store.get
    monkeypatch.setattr(h.store, "get", lambda org, job_id: reads.append(job_id) or original(org, job_id))
    assert h.run(h.receive()) == {"batchItemFailures": []}
    assert reads == []
    assert h.job(job.job_id).status == "completed"


def test_a_message_whose_type_is_not_the_jobs_never_starts_it(h):
    job = h.enqueue()
    message = h.receive()[0]
    body = json.loads(message["Body"])
    body["type"] = "sms"
    message["Body"] = json.dumps(body)
    assert h.run([message]) == {"batchItemFailures": []}  # dead-lettered, not retried
    assert h.job(job.job_id).status == "queued" and h.job(job.job_id).attempts == 0 and h.effects == []
    h.settle()
    (dead,) = h.receive("herald-local-normal-dlq")
    assert dead["Body"] == message["Body"]
    assert dead["MessageAttributes"]["error_code"]["StringValue"] == "envelope_mismatch"


def test_a_duplicate_of_a_running_job_costs_one_refused_start_and_one_read(h, monkeypatch):
    job = h.enqueue()
    messages = h.receive()
    assert h.store.begin_attempt("org-a", job.job_id, lease_s=90) is not None  # running elsewhere
    calls: list[str] = []
    for name in ("begin_attempt", "get"):
        original = getattr(h.store, name)
        monkeypatch.setattr(h.store, name, lambda *a, _n=name, _o=original, **k: calls.append(_n) or _o(*a, **k))
    response = h.run(messages)
    assert len(response["batchItemFailures"]) == 1  # kept, not dropped
    assert calls == ["begin_attempt", "get"]
