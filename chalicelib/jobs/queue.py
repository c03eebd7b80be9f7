"""Job messages on SQS: one queue per priority, each with its dead-letter queue."""

from __future__ import annotations

import math
import threading
from datetime import datetime
from typing import Any

from chalicelib.clock import Clock, utcnow
from chalicelib.config import Settings
from chalicelib.jobs.model import Envelope, Job

SQS_MAX_VISIBILITY_S = 43_200


class JobQueue:
    def __init__(self, sqs: Any, settings: Settings, clock: Clock = utcnow) -> None:
        self._sqs = sqs
        self._settings = settings
        self._clock = clock
        self._urls: dict[str, str] = {}
        self._lock = threading.Lock()

    def url_of(self, name: str) -> str:
        """Queue URL by name, looked up once per container."""
        with self._lock:
            if name not in self._urls:
                self._urls[name] = self._sqs.get_queue_url(QueueName=name)["QueueUrl"]
            return self._urls[name]

    def delay_for(self, run_at: datetime) -> int:
        """SQS DelaySeconds for a message that should run at `run_at` (one hop of a long delay)."""
        remaining = (run_at - self._clock()).total_seconds()
        return max(0, min(int(remaining + 0.999), self._settings.max_queue_delay_s))

    def send(self, job: Job, attempt: int | None = None) -> str:
        return self._send(job, Envelope.of(job, attempt=attempt).to_json(), self.delay_for(job.run_at))

    def send_outcome(self, job: Job, result: dict[str, Any] | None, delay_s: int, max_bytes: int) -> str:
        """Put the outcome of the job's current attempt on its queue (an outcome message: see
        `Envelope.outcome`), delivered after `delay_s`. ValueError when it would exceed `max_bytes`."""
        body = Envelope.of(job, outcome={"status": "completed", "result": result}).to_json()
        if len(body.encode()) > max_bytes:
            raise ValueError(f"the outcome message would be over {max_bytes} bytes")
        return self._send(job, body, max(0, min(delay_s, self._settings.max_queue_delay_s)))

    def _send(self, job: Job, body: str, delay_s: int) -> str:
        response = self._sqs.send_message(
            QueueUrl=self.queue_url(job.priority),
            MessageBody=body,
            DelaySeconds=delay_s,
            # Fair queues: on AWS, a standard queue with message groups keeps one noisy org
            # from starving the others. LocalStack accepts and stores it, without the fairness.
            MessageGroupId=job.org_id,
            MessageAttributes=_attributes(job.org_id, job.type, job.job_id),
        )
        return str(response["MessageId"])

    def queue_name(self, priority: str) -> str:
        return self._settings.queue_name(priority)

    def queue_url(self, priority: str) -> str:
        return self.url_of(self._settings.queue_name(priority))

    def batch_entry(self, job: Job, entry_id: str) -> dict[str, Any]:
        """The message `send` would send, as one SendMessageBatch entry (fan-outs send ten per
        call). The caller groups entries by `job.priority`'s queue (`queue_url`)."""
        envelope = Envelope.of(job)
        return {
            "Id": entry_id,
            "MessageBody": envelope.to_json(),
            "DelaySeconds": self.delay_for(job.run_at),
            "MessageGroupId": job.org_id,
            "MessageAttributes": _attributes(job.org_id, job.type, job.job_id),
        }

    def send_to_bury(self, priority: str, body: str, attributes: dict[str, str], group: str) -> str:
        """Put a message that must end in the priority's DLQ on the priority's *queue*: the worker
        hands it back until SQS's redrive policy moves it to the DLQ (see chalicelib/jobs/burial.py).

        Returns the message's id, which it keeps in the DLQ (the dead-letter ledger shows it)."""
        response = self._sqs.send_message(
            QueueUrl=self.queue_url(priority),
            MessageBody=body,
            MessageGroupId=group or "-",
            MessageAttributes={k: {"DataType": "String", "StringValue": v[:256] or "-"} for k, v in attributes.items()},
        )
        return str(response.get("MessageId", ""))

    def hand_back(self, priority: str, receipt_handle: str) -> None:
        """Make a received message visible again at once (a burial message's next receive)."""
        self._sqs.change_message_visibility(
            QueueUrl=self.queue_url(priority), ReceiptHandle=receipt_handle, VisibilityTimeout=0
        )

    def retry_after(self, priority: str, receipt_handle: str, seconds: float) -> None:
        """Hide the message for `seconds`: SQS hands it out again then (the backoff)."""
        self._sqs.change_message_visibility(
            QueueUrl=self.url_of(self._settings.queue_name(priority)),
            ReceiptHandle=receipt_handle,
            # Round up: truncating 0.7 s to 0 would hand the message out again at once.
            VisibilityTimeout=max(1, min(math.ceil(seconds), SQS_MAX_VISIBILITY_S)),
        )


def _attributes(org_id: str, job_type: str, job_id: str) -> dict[str, Any]:
    return {
        "org_id": {"DataType": "String", "StringValue": org_id},
        "type": {"DataType": "String", "StringValue": job_type},
        "job_id": {"DataType": "String", "StringValue": job_id},
    }
