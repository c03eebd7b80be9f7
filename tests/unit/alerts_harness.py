"""What the alert unit tests share: Herald's services over moto, a clock the test moves, a fake
SMS provider, and a way to run the worker over what sits on a queue.

Fixtures are registered under their short names (`svc`, `parts`, `clock`, `aws_env`): import
the `*_fixture` functions into a test module.

No network: moto answers every AWS call in process (the unit suite runs with sockets disabled).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from moto import mock_aws
from moto.dynamodb.responses import DynamoHandler

from chalicelib import aws
from chalicelib.alerts.incidents import IncidentIndex
from chalicelib.alerts.limits import AlertRateLimit, TokenBucket
from chalicelib.alerts.quiet_hours import RecipientQuietHours
from chalicelib.auth import Principal
from chalicelib.config import PRIORITIES, Settings
from chalicelib.ddb import to_item
from chalicelib.handlers.sms import Courier, EscalationHandler, SmsAlertHandler, SmsChannel, lazy
from chalicelib.jobs.ledger import DeadLetterLedger
from chalicelib.jobs.model import Job
from chalicelib.jobs.queue import JobQueue
from chalicelib.jobs.service import JobService, NewJob
from chalicelib.jobs.store import JobStore
from chalicelib.jobs.worker import Worker
from chalicelib.providers.email import SesEmailProvider
from chalicelib.providers.sms import SmsSendResult
from chalicelib.services import Services, build, reset, use
from infra.template import template

REGION = "us-east-1"
ORG = "acme"
OTHER_ORG = "globex"
MEMBER = "tok-acme-member"
OTHER_MEMBER = "tok-globex-member"
OPERATOR = "tok-operator"
SOURCE = "herald@example.com"


class FakeClock:
    """A clock that stands still until the test moves it."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or datetime(2026, 3, 2, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class FakeSms:
    """An SmsProvider that records what it sent, or fails as told (`failures`, in order)."""

    name: str = "sns"
    sent: list[tuple[str, str, str]] = field(default_factory=list)
    failures: list[Exception] = field(default_factory=list)
    _ids: Iterator[int] = field(default_factory=itertools.count)

    def send(self, to: str, text: str, *, idempotency_key: str) -> SmsSendResult:
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append((to, text, idempotency_key))
        return SmsSendResult(self.name, f"msg-{next(self._ids)}")


def settings(**env: str) -> Settings:
    return Settings.from_env({"HERALD_STAGE": "local", "AWS_REGION": REGION, **env})


def create_resources(ddb: Any, sqs: Any, config: Settings) -> None:
    table = template()["Resources"]["Table"]["Properties"]
    ddb.create_table(
        TableName=config.table_name,
        AttributeDefinitions=table["AttributeDefinitions"],
        KeySchema=table["KeySchema"],
        GlobalSecondaryIndexes=table["GlobalSecondaryIndexes"],
        BillingMode="PAY_PER_REQUEST",
    )
    for priority in PRIORITIES:
        sqs.create_queue(QueueName=config.dlq_name(priority))
        sqs.create_queue(QueueName=config.queue_name(priority), Attributes={"VisibilityTimeout": "30"})


@pytest.fixture(name="aws_env")
def aws_env_fixture(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and no endpoint overrides: nothing may reach a real or local cloud."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_SESSION_TOKEN": "test",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_SQS"):
        monkeypatch.delenv(name, raising=False)


def serialize_moto_dynamodb(monkeypatch: pytest.MonkeyPatch) -> None:
    """DynamoDB checks and applies a conditional write as one step; moto does not lock, so two
    threads can both pass the same condition. One request at a time restores DynamoDB's
    atomicity, so concurrency tests exercise our conditions rather than moto's races."""
    lock = threading.Lock()
    original = DynamoHandler.call_action

    def call_action(self: DynamoHandler) -> Any:
        with lock:
            return original(self)

    monkeypatch.setattr(DynamoHandler, "call_action", call_action)


@pytest.fixture(name="svc")
def svc_fixture(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Services]:
    """Herald's service graph over moto, installed as `services()`, with two orgs' member tokens."""
    serialize_moto_dynamodb(monkeypatch)
    with mock_aws():
        reset()
        config = settings()
        create_resources(aws.client("dynamodb"), aws.client("sqs"), config)
        services = build(config)
        services.tokens.put(MEMBER, Principal(role="member", org_id=ORG))
        services.tokens.put(OTHER_MEMBER, Principal(role="member", org_id=OTHER_ORG))
        services.tokens.put(OPERATOR, Principal(role="operator", org_id=None))
        aws.client("ses").verify_email_identity(EmailAddress=SOURCE)
        use(services)
        yield services
        reset()


@dataclass
class Parts:
    """The alert machinery built by hand around one clock and one fake SMS provider."""

    svc: Services
    clock: FakeClock
    sms: FakeSms
    store: JobStore
    jobs: JobService
    limit: AlertRateLimit
    bucket: TokenBucket
    courier: Courier
    channel: SmsChannel
    alerts: SmsAlertHandler
    escalations: EscalationHandler
    worker: Worker

    def job(self, job_type: str, payload: dict[str, Any], **kw: Any) -> Job:
        job, _ = self.jobs.enqueue(NewJob(org_id=ORG, type=job_type, payload=payload, **kw))
        return job

    def start(self, job: Job) -> Job:
        """What the worker does before it calls a handler: one more attempt, `active`."""
        started = self.store.begin_attempt(job.org_id, job.job_id, lease_s=60)
        assert started is not None, f"job {job.job_id} could not start"
        return started

    def run(self, job: Job) -> dict[str, Any] | None:
        """One attempt, as the worker would run it (start, handler, complete); errors propagate."""
        started = self.start(job)
        handler = self.alerts if job.type == "sms" else self.escalations
        result = handler(started)
        self.store.complete(started, result)
        return result

    def get(self, job: Job) -> Job:
        found = self.store.get(job.org_id, job.job_id)
        assert found is not None
        return found

    def put_recipient(self, user_id: str, timezone: str, start: str | None, end: str | None) -> None:
        item: dict[str, Any] = {
            "pk": f"ORG#{ORG}",
            "sk": f"RECIPIENT#{user_id}",
            "user_id": user_id,
            "timezone": timezone,
            "email": f"{user_id}@example.com",
        }
        if start is not None:
            item["quiet_hours"] = {"start": start, "end": end}
        self.svc.ddb.put_item(TableName=self.svc.settings.table_name, Item=to_item(item))


@pytest.fixture(name="clock")
def clock_fixture() -> FakeClock:
    return FakeClock()


@pytest.fixture(name="parts")
def parts_fixture(svc: Services, clock: FakeClock) -> Parts:
    table = svc.settings.table_name
    store = JobStore(svc.ddb, table, clock=clock)
    queue = JobQueue(svc.sqs, svc.settings, clock=clock)
    sms = FakeSms()
    courier = Courier(store, clock)
    bucket = TokenBucket(svc.ddb, table, clock=clock)
    channel = SmsChannel(courier, bucket, lambda: sms, svc.settings, clock)
    limit = AlertRateLimit(svc.ddb, table, svc.settings.sms_rate_window_s, clock=clock)
    alerts = SmsAlertHandler(courier, channel, limit, RecipientQuietHours(svc.ddb, table), clock)
    escalations = EscalationHandler(
        courier,
        channel,
        lazy(lambda: SesEmailProvider(aws.client("ses"), SOURCE)),
        IncidentIndex(svc.ddb, table),
        SOURCE,
    )
    worker = Worker(
        store,
        queue,
        DeadLetterLedger(svc.ddb, table, clock=clock),
        {"sms": alerts, "escalation": escalations},
        svc.settings,
        clock=clock,
        rng=lambda: 0.5,
    )
    return Parts(
        svc,
        clock,
        sms,
        store,
        JobService(store, queue, clock),
        limit,
        bucket,
        courier,
        channel,
        alerts,
        escalations,
        worker,
    )


def alert_payload(**overrides: Any) -> dict[str, Any]:
    payload = {
        "alert_id": "freezer-7",
        "user_id": "u-1",
        "phone_number": "+15551230001",
        "message": "Freezer 7 is at -2 C",
        "alert_type": "temperature_high",
        "severity": "critical",
    }
    payload.update(overrides)
    return payload


# --- queues, as the event source mapping sees them -------------------------------------------


def queue_url(svc: Services, priority: str) -> str:
    return svc.queue.url_of(svc.settings.queue_name(priority))


def receive(svc: Services, priority: str, max_messages: int = 10) -> list[dict[str, Any]]:
    response = svc.sqs.receive_message(
        QueueUrl=queue_url(svc, priority),
        MaxNumberOfMessages=max_messages,
        MessageAttributeNames=["All"],
        AttributeNames=["All"],
    )
    return list(response.get("Messages", []))


def as_record(message: dict[str, Any], svc: Services, priority: str) -> dict[str, Any]:
    """An SQS message as Lambda hands it over in an event record."""
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": message.get("Attributes", {}),
        "messageAttributes": {
            name: {"stringValue": value.get("StringValue"), "dataType": value["DataType"]}
            for name, value in message.get("MessageAttributes", {}).items()
        },
        "md5OfBody": hashlib.md5(message["Body"].encode()).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:{REGION}:123456789012:{svc.settings.queue_name(priority)}",
        "awsRegion": REGION,
    }


def drain(svc: Services, worker: Worker, priority: str) -> int:
    """Run the worker over every visible message of a queue, deleting what it acknowledged."""
    handled = 0
    while messages := receive(svc, priority):
        event = {"Records": [as_record(m, svc, priority) for m in messages]}
        response = worker.handle_batch(event, None, priority)
        failed = {item["itemIdentifier"] for item in response.get("batchItemFailures", [])}
        for message in messages:
            if message["MessageId"] not in failed:
                svc.sqs.delete_message(QueueUrl=queue_url(svc, priority), ReceiptHandle=message["ReceiptHandle"])
        handled += len(messages)
        if failed == {m["MessageId"] for m in messages}:
            break
    return handled


def queue_depth(svc: Services, priority: str) -> int:
    """Messages on a queue, visible or delayed or in flight."""
    attrs = svc.sqs.get_queue_attributes(QueueUrl=queue_url(svc, priority), AttributeNames=["All"])["Attributes"]
    return sum(
        int(attrs[name])
        for name in (
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesDelayed",
            "ApproximateNumberOfMessagesNotVisible",
        )
    )


def body(reply: Any) -> Any:
    return json.loads(reply.body) if reply.body else None
