"""The queues as operators see them: depths from SQS, dead letters from the ledger.

SQS reports depths (GetQueueAttributes) but no message ages: `ApproximateAgeOfOldestMessage` is
a CloudWatch metric only. `oldest_message_age_s` is therefore the metric's latest value (one
GetMetricData call for every queue, cached for a minute, which is the metric's resolution), or
null when CloudWatch has no datapoint: LocalStack does not publish that metric, so it is null
on the local stack.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from chalicelib.clock import Clock, utcnow
from chalicelib.config import PRIORITIES, Settings
from chalicelib.jobs.ledger import DeadLetterLedger, message_key
from chalicelib.jobs.model import Envelope, EnvelopeError
from chalicelib.jobs.queue import JobQueue
from chalicelib.observability import logger

AGE_CACHE_S = 60.0
RECONCILE_MAX_MESSAGES = 1_000  # per call; a bigger gap is closed over several listings
RECONCILE_HOLD_S = 30
RECONCILE_EVERY_S = 60.0
MOVED_BY_SQS = {
    "code": "receive_limit_exceeded",
    "message": "SQS moved it to the DLQ: it was received more often than the queue's maxReceiveCount "
    "without an outcome (the worker crashed or timed out every time)",
}


@dataclass(frozen=True)
class QueueRef:
    """A job queue and its dead-letter queue."""

    priority: str
    name: str
    dlq_name: str


@dataclass(frozen=True)
class Depth:
    visible: int
    in_flight: int
    delayed: int

    @property
    def total(self) -> int:
        return self.visible + self.in_flight + self.delayed


class QueueOps:
    def __init__(
        self,
        sqs: Any,
        queue: JobQueue,
        ledger: DeadLetterLedger,
        settings: Settings,
        cloudwatch: Callable[[], Any],
        clock: Clock = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sqs = sqs
        self._queue = queue
        self._ledger = ledger
        self._settings = settings
        self._cloudwatch = cloudwatch
        self._clock = clock
        self._monotonic = monotonic
        self._arns: dict[str, str] = {}
        self._ages: tuple[float, dict[str, float | None]] | None = None
        self._reconciled: dict[str, float] = {}
        self._lock = threading.Lock()

    # --- names -----------------------------------------------------------------------------

    def refs(self) -> list[QueueRef]:
        return [QueueRef(p, self._settings.queue_name(p), self._settings.dlq_name(p)) for p in PRIORITIES]

    def resolve(self, name: str) -> QueueRef | None:
        """A queue by its name (`herald-{stage}-normal`) or its priority (`normal`)."""
        for ref in self.refs():
            if name in (ref.name, ref.priority):
                return ref
        return None

    def url(self, name: str) -> str:
        return self._queue.url_of(name)

    def arn(self, name: str) -> str:
        with self._lock:
            if name in self._arns:
                return self._arns[name]
        attributes = self._sqs.get_queue_attributes(QueueUrl=self.url(name), AttributeNames=["QueueArn"])["Attributes"]
        with self._lock:
            self._arns[name] = str(attributes["QueueArn"])
            return self._arns[name]

    # --- depths ----------------------------------------------------------------------------

    def depth(self, name: str) -> Depth:
        attributes = self._sqs.get_queue_attributes(
            QueueUrl=self.url(name),
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )["Attributes"]
        return Depth(
            visible=int(attributes.get("ApproximateNumberOfMessages", 0)),
            in_flight=int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
            delayed=int(attributes.get("ApproximateNumberOfMessagesDelayed", 0)),
        )

    def oldest_ages(self) -> dict[str, float | None]:
        """Each queue's ApproximateAgeOfOldestMessage (s) from CloudWatch, None without a datapoint."""
        now = self._monotonic()
        with self._lock:
            if self._ages is not None and now - self._ages[0] < AGE_CACHE_S:
                return dict(self._ages[1])
        refs = self.refs()
        ages: dict[str, float | None] = {ref.name: None for ref in refs}
        end = self._clock()
        try:
            response = self._cloudwatch().get_metric_data(
                MetricDataQueries=[
                    {
                        "Id": f"q{i}",
                        "MetricStat": {
                            "Metric": {
                                "Namespace": "AWS/SQS",
                                "MetricName": "ApproximateAgeOfOldestMessage",
                                "Dimensions": [{"Name": "QueueName", "Value": ref.name}],
                            },
                            "Period": 60,
                            "Stat": "Maximum",
                        },
                    }
                    for i, ref in enumerate(refs)
                ],
                StartTime=end - timedelta(minutes=5),
                EndTime=end,
                ScanBy="TimestampDescending",
            )
            for result in response.get("MetricDataResults", []):
                index = int(str(result["Id"])[1:])
                if result.get("Values"):
                    ages[refs[index].name] = float(result["Values"][0])
        except Exception as err:  # ages are a nicety: the depths must still answer
            logger.warning("queue ages unavailable", extra={"error": f"{type(err).__name__}: {err}"})
            return ages
        with self._lock:
            self._ages = (now, ages)
        return dict(ages)

    def reconcile(self, ref: QueueRef) -> int:
        """Enter in the ledger the DLQ's messages it does not list: messages SQS moved there on
        its own (their receive count ran out: a worker that crashed or timed out every time).
        Only when the DLQ holds more than the ledger lists; the messages received to read them are
        made visible again at once. At most once a minute per queue and container (a listing
        must not cost a DLQ depth and a ledger count every time). How many entries it added."""
        now = self._monotonic()
        with self._lock:
            if now - self._reconciled.get(ref.name, -RECONCILE_EVERY_S) < RECONCILE_EVERY_S:
                return 0
            self._reconciled[ref.name] = now
        visible = self.depth(ref.dlq_name).visible
        if visible == 0 or visible <= self._ledger.count(ref.name):
            return 0
        url = self.url(ref.dlq_name)
        held: list[str] = []
        added = 0
        try:
            while len(held) < min(visible, RECONCILE_MAX_MESSAGES):
                messages = self._sqs.receive_message(
                    QueueUrl=url,
                    MaxNumberOfMessages=10,
                    VisibilityTimeout=RECONCILE_HOLD_S,
                    WaitTimeSeconds=0,
                    MessageAttributeNames=["All"],
                    MessageSystemAttributeNames=["All"],
                ).get("Messages", [])
                if not messages:
                    break
                for message in messages:
                    held.append(str(message["ReceiptHandle"]))
                    added += self._enter(ref, message)
        finally:
            for start in range(0, len(held), 10):
                batch = held[start : start + 10]
                self._sqs.change_message_visibility_batch(
                    QueueUrl=url,
                    Entries=[{"Id": str(i), "ReceiptHandle": r, "VisibilityTimeout": 0} for i, r in enumerate(batch)],
                )
        if added:
            logger.warning("dead letters SQS moved on its own entered in the ledger", extra={"count": added})
        return added

    def _enter(self, ref: QueueRef, message: dict[str, Any]) -> int:
        attributes = message.get("MessageAttributes") or {}

        def attribute(name: str) -> str:
            return str((attributes.get(name) or {}).get("StringValue") or "")

        try:
            envelope = Envelope.from_json(message.get("Body") or "")
            key: tuple[str, str] | None = (envelope.org_id, envelope.job_id)
            job_type, attempts = envelope.type, envelope.attempt
        except EnvelopeError:
            key, job_type, attempts = message_key(message), attribute("type"), 0
        if key is None or self._ledger.get(ref.name, *key) is not None:
            return 0
        code = attribute("error_code")
        error = {"code": code, "message": attribute("error_message") or code} if code else MOVED_BY_SQS
        self._ledger.record(
            ref.name,
            org_id=key[0],
            job_id=key[1],
            job_type=job_type,
            attempts=attempts,
            error=error,
            message_id=str(message.get("MessageId") or ""),
        )
        return 1

    def stats(self, org_id: str | None) -> list[dict[str, Any]]:
        """Every queue with its DLQ. For an organization's admin, `dlq_depth` counts its own dead
        letters (from the ledger); the queue's own depths are the shared queue's (no ids in them)."""
        refs = self.refs()
        with ThreadPoolExecutor(max_workers=len(refs) * 2 + 1) as pool:
            ages = pool.submit(self.oldest_ages)
            depths = {ref.name: pool.submit(self.depth, ref.name) for ref in refs}
            dlqs = {ref.name: pool.submit(self.depth, ref.dlq_name) for ref in refs} if org_id is None else {}
            recorded = {ref.name: pool.submit(self._ledger.count, ref.name, org_id) for ref in refs}
            rows = []
            for ref in refs:
                depth = depths[ref.name].result()
                dead = recorded[ref.name].result()
                rows.append(
                    {
                        "name": ref.name,
                        "priority": ref.priority,
                        "visible": depth.visible,
                        "in_flight": depth.in_flight,
                        "delayed": depth.delayed,
                        "dlq_name": ref.dlq_name,
                        "dlq_depth": dlqs[ref.name].result().total if org_id is None else dead,
                        "dead_letters_recorded": dead,
                        "oldest_message_age_s": ages.result().get(ref.name),
                    }
                )
        return rows
