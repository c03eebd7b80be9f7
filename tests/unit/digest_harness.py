"""What the digest tests share: botocore hooks that count (and may answer) SQS and record SES
calls, a worker loop over moto's queues, and in-memory stand-ins for the 10,000-recipient run.

Counting is done with botocore's own event system (``before-call.<service>.<operation>``), on
the very client the code under test uses, so what is counted is what would go over the wire. In
"answer" mode the hook also answers the call (a ``before-call`` handler that returns a response
short-circuits the HTTP request), which keeps the 10,000-recipient run off moto, whose SQS slows
down with deep queues, and off the network (the unit suite runs with sockets disabled).
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import boto3

from chalicelib.digests.runner import Progress
from chalicelib.jobs.model import Job
from chalicelib.jobs.worker import Worker
from chalicelib.recipients import Recipient
from chalicelib.services import Services

PRIORITIES = ("critical", "high", "normal", "low")

# Pessimistic in-region latencies (seconds) for the modelled run: what one call costs on AWS.
PUT_ITEM_S = 0.010
BATCH_GET_S = 0.020
QUERY_PAGE_S = 0.040
SEND_BATCH_S = 0.025


# --- botocore hooks ---------------------------------------------------------------------------


class _Http:
    status_code = 200
    headers: dict[str, str] = {}  # noqa: RUF012 - read-only stand-in for botocore's response


@dataclass
class SqsHook:
    """Counts SendMessage/SendMessageBatch calls on a client; in answer mode answers them too.

    ``fail`` (answer mode): entry Id -> how many more times to answer it as failed.
    ``on_batch``: called per SendMessageBatch call (e.g. to advance a modelled clock).
    """

    answer: bool = False
    calls: Counter[str] = field(default_factory=Counter)
    entries: list[dict[str, Any]] = field(default_factory=list)
    fail: Counter[str] = field(default_factory=Counter)
    on_batch: Any = None
    _last: dict[str, Any] = field(default_factory=dict)

    def install(self, client: Any) -> Any:
        events = client.meta.events
        for op in ("SendMessage", "SendMessageBatch", "GetQueueUrl"):
            events.register(f"before-parameter-build.sqs.{op}", self._params)
            events.register(f"before-call.sqs.{op}", self._call)
        return client

    def _params(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self._last[model.name] = dict(params)

    def _call(self, model: Any, **_: Any) -> Any:
        name = model.name
        if name != "GetQueueUrl":
            self.calls[name] += 1
        params = self._last.get(name, {})
        if name == "SendMessageBatch":
            if self.on_batch is not None:
                self.on_batch()
            self.entries.extend(params.get("Entries", []))
        if not self.answer:
            return None
        if name == "GetQueueUrl":
            return _Http(), {"QueueUrl": f"https://sqs.us-east-1.amazonaws.com/123456789012/{params['QueueName']}"}
        if name == "SendMessage":
            return _Http(), {"MessageId": f"m-{self.calls[name]}"}
        ok, failed = [], []
        for entry in params["Entries"]:
            if self.fail[entry["Id"]] > 0:
                self.fail[entry["Id"]] -= 1
                failed.append({"Id": entry["Id"], "Code": "InternalError", "SenderFault": False, "Message": "x"})
            else:
                ok.append({"Id": entry["Id"], "MessageId": f"m-{entry['Id']}", "MD5OfMessageBody": "0" * 32})
        return _Http(), {"Successful": ok, "Failed": failed}


def answering_sqs_client(hook: SqsHook) -> Any:
    """A real boto3 SQS client whose calls the hook answers: nothing leaves the process."""
    client = boto3.client(
        "sqs",
        region_name="us-east-1",
        aws_access_key_id="t",
        aws_secret_access_key="t",
        endpoint_url="https://sqs.invalid",
    )
    hook.answer = True
    return hook.install(client)


@dataclass
class SesRecorder:
    """Every SendEmail call's parameters (moto sends them on; it keeps only one body part)."""

    sent: list[dict[str, Any]] = field(default_factory=list)

    def install(self, client: Any) -> None:
        client.meta.events.register("before-parameter-build.ses.SendEmail", self._record)

    def _record(self, params: dict[str, Any], **_: Any) -> None:
        body = params["Message"]["Body"]
        self.sent.append(
            {
                "to": list(params["Destination"]["ToAddresses"]),
                "subject": params["Message"]["Subject"]["Data"],
                "text": body.get("Text", {}).get("Data"),
                "html": body.get("Html", {}).get("Data"),
            }
        )

    def to(self, address: str) -> list[dict[str, Any]]:
        return [mail for mail in self.sent if address in mail["to"]]


# --- a worker loop over moto's queues ------------------------------------------------------


class LambdaContext:
    def __init__(self, remaining_s: float = 30.0) -> None:
        self._deadline = time.monotonic() + remaining_s

    def get_remaining_time_in_millis(self) -> int:
        return int((self._deadline - time.monotonic()) * 1000)


def _record(message: dict[str, Any], priority: str) -> dict[str, Any]:
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
        "eventSourceARN": f"arn:aws:sqs:us-east-1:123456789012:herald-local-{priority}",
        "awsRegion": "us-east-1",
    }


def receive(svc: Services, priority: str) -> list[dict[str, Any]]:
    url = svc.queue.url_of(svc.settings.queue_name(priority))
    return list(
        svc.sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"], MessageAttributeNames=["All"]
        ).get("Messages", [])
    )


def depth(svc: Services, priority: str) -> int:
    url = svc.queue.url_of(svc.settings.queue_name(priority))
    attributes = svc.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return sum(
        int(attributes.get(name, 0))
        for name in (
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        )
    )


def drain(svc: Services, worker: Worker | None = None, timeout_s: float = 30.0) -> int:
    """Run the worker over every queue until all are empty (as the SQS event sources would);
    messages are deleted after a batch, failures left for their visibility timeout."""
    worker = worker or svc.worker
    handled = 0
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        busy = False
        for priority in PRIORITIES:
            messages = receive(svc, priority)
            if not messages:
                continue
            busy = True
            result = worker.handle_batch(
                {"Records": [_record(m, priority) for m in messages]}, LambdaContext(), priority
            )
            failed = {f["itemIdentifier"] for f in result["batchItemFailures"]}
            url = svc.queue.url_of(svc.settings.queue_name(priority))
            for message in messages:
                if message["MessageId"] not in failed:
                    svc.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            handled += len(messages)
        if not busy:
            if not any(depth(svc, p) for p in PRIORITIES):
                return handled
            time.sleep(0.2)  # a delayed message (a continuation hop) becomes visible
    raise AssertionError("queues did not drain in time")


# --- in-memory stand-ins, with modelled AWS latency -----------------------------------------


class ModelledTime:
    """`monotonic()` = real time spent here + the modelled latency of the calls made so far."""

    def __init__(self) -> None:
        self._t0 = time.perf_counter()
        self.modelled = 0.0

    def advance(self, seconds: float) -> None:
        self.modelled += seconds

    def __call__(self) -> float:
        return (time.perf_counter() - self._t0) + self.modelled


class MemRecipients:
    def __init__(self, recipients: dict[str, list[Recipient]], clock: ModelledTime | None = None) -> None:
        self._by_org = {org: sorted(items, key=lambda r: r.user_id) for org, items in recipients.items()}
        self._clock = clock
        self.pages = 0

    def iter_after(self, org_id: str, after: str | None = None, page_size: int = 500) -> Iterator[Recipient]:
        items = [r for r in self._by_org.get(org_id, []) if after is None or r.user_id > after]
        for start in range(0, max(len(items), 1), page_size):
            self.pages += 1
            if self._clock is not None:
                self._clock.advance(QUERY_PAGE_S)
            yield from items[start : start + page_size]

    def get(self, org_id: str, user_id: str) -> Recipient | None:
        return next((r for r in self._by_org.get(org_id, []) if r.user_id == user_id), None)


class MemJobStore:
    """The JobStore methods the fan-out uses, over a dict, with the conditional-create rule."""

    def __init__(self, clock: ModelledTime | None = None, put_s: float = PUT_ITEM_S, parallel: bool = True) -> None:
        self.jobs: dict[tuple[str, str], Job] = {}
        self._clock = clock
        self._put_s = put_s
        self._parallel = parallel  # False: a store that serializes writes (DynamoDB Local on disk)
        self.put_calls = 0

    def _cost(self, seconds: float) -> None:
        if self._clock is not None:
            self._clock.advance(seconds)

    def statuses(self, org_id: str, job_ids: list[str]) -> dict[str, str]:
        self._cost(math.ceil(len(job_ids) / 100) * BATCH_GET_S)
        return {i: self.jobs[(org_id, i)].status for i in job_ids if (org_id, i) in self.jobs}

    def create_many(self, jobs: list[Job], max_workers: int = 16) -> list[Job]:
        self.put_calls += len(jobs)
        self._cost(math.ceil(len(jobs) / (max(max_workers, 1) if self._parallel else 1)) * self._put_s)
        created = []
        for job in jobs:
            if (job.org_id, job.job_id) not in self.jobs:
                self.jobs[(job.org_id, job.job_id)] = job
                created.append(job)
        return created

    def get(self, org_id: str, job_id: str) -> Job | None:
        return self.jobs.get((org_id, job_id))

    def iter_created(self, org_id: str, start: datetime, end: datetime) -> Iterator[dict[str, Any]]:
        self._cost(QUERY_PAGE_S)
        return iter([])


class MemProgress:
    def __init__(self, clock: ModelledTime | None = None) -> None:
        self.saved: dict[tuple[str, str], str] = {}
        self.saves = 0
        self._clock = clock

    def load(self, org_id: str, job_id: str) -> Progress:
        raw = self.saved.get((org_id, job_id))
        return Progress(**json.loads(raw)) if raw else Progress()

    def save(self, org_id: str, job_id: str, progress: Progress) -> None:
        self.saves += 1
        if self._clock is not None:
            self._clock.advance(PUT_ITEM_S)
        self.saved[(org_id, job_id)] = json.dumps(asdict(progress))
