"""Operations over moto: jobs killed by the real worker, redrives run in-process.

moto has no message-move-task API, so `MoveTaskSqs` adds one that moves like LocalStack's (the
whole DLQ, back to the destination, in one go); everything else is moto's SQS.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

from botocore.exceptions import ClientError

from chalicelib.errors import FatalError
from chalicelib.jobs.model import Job
from chalicelib.jobs.service import NewJob
from chalicelib.jobs.worker import Worker
from chalicelib.ops.dlq import Depth, QueueOps
from chalicelib.ops.records import RedriveStore
from chalicelib.ops.redrive import RedriveService
from chalicelib.services import Services
from tests.unit.test_worker import sqs_record


class MoveTaskSqs:
    """moto's SQS client plus StartMessageMoveTask / ListMessageMoveTasks."""

    def __init__(self, sqs: Any) -> None:
        self._sqs = sqs
        self.tasks: list[dict[str, Any]] = []
        self.started: list[dict[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sqs, name)

    def _url(self, arn: str) -> str:
        return str(self._sqs.get_queue_url(QueueName=arn.rsplit(":", 1)[-1])["QueueUrl"])

    def start_message_move_task(self, **request: Any) -> dict[str, Any]:
        source = request["SourceArn"]
        if any(t["SourceArn"] == source and t["Status"] == "RUNNING" for t in self.tasks):
            raise ClientError({"Error": {"Code": "InvalidParameterValue", "Message": "task running"}}, "Start")
        self.started.append(request)
        src, dst = self._url(source), self._url(request["DestinationArn"])
        moved = 0
        while True:
            messages = self._sqs.receive_message(
                QueueUrl=src, MaxNumberOfMessages=10, VisibilityTimeout=30, MessageAttributeNames=["All"]
            ).get("Messages", [])
            if not messages:
                break
            for m in messages:
                attributes = {
                    k: {"DataType": v["DataType"], "StringValue": v["StringValue"]}
                    for k, v in m.get("MessageAttributes", {}).items()
                }
                self._sqs.send_message(QueueUrl=dst, MessageBody=m["Body"], MessageAttributes=attributes)
                self._sqs.delete_message(QueueUrl=src, ReceiptHandle=m["ReceiptHandle"])
                moved += 1
        handle = f"task-{len(self.tasks)}"
        self.tasks.append(
            {
                "TaskHandle": handle,
                "SourceArn": source,
                "DestinationArn": request["DestinationArn"],
                "Status": "COMPLETED",
                "ApproximateNumberOfMessagesMoved": moved,
                "ApproximateNumberOfMessagesToMove": moved,
                "StartedTimestamp": int(time.time() * 1000),
            }
        )
        return {"TaskHandle": handle}

    def list_message_move_tasks(self, **request: Any) -> dict[str, Any]:
        results = [
            {k: v for k, v in task.items() if k != "TaskHandle" or task["Status"] == "RUNNING"}
            for task in reversed(self.tasks)
            if task["SourceArn"] == request["SourceArn"]
        ]
        return {"Results": results[: request.get("MaxResults", 1)]}


class OpsHarness:
    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self.sqs = MoveTaskSqs(svc.sqs)
        self.invocations: list[str] = []
        self.failures: dict[str, Exception] = {}
        self.delivered: list[str] = []
        self.queue_ops = QueueOps(self.sqs, svc.queue, svc.ledger, svc.settings, _cloudwatch)
        self.redrives = RedriveService(
            RedriveStore(svc.ddb, svc.settings.table_name),
            svc.store,
            svc.queue,
            svc.ledger,
            self.queue_ops,
            self.sqs,
            self.invocations.append,
            receive_wait_s=0,
            poll_s=0,
            sleep=lambda seconds: None,
        )
        # What the routes reach through services(): the same objects.
        svc.__dict__["queue_ops"] = self.queue_ops
        svc.__dict__["redrives"] = self.redrives
        self.worker = Worker(
            svc.store, svc.queue, svc.ledger, {"webhook": self._handle, "email": self._handle}, svc.settings
        )

    def _handle(self, job: Job) -> dict[str, Any]:
        error = self.failures.get(job.job_id)
        if error is not None:
            raise error
        self.delivered.append(job.job_id)
        return {"ok": True}

    # --- making dead letters ----------------------------------------------------------------

    def enqueue(self, org: str, *, priority: str = "normal", job_type: str = "webhook") -> Job:
        job, _ = self.svc.jobs.enqueue(
            NewJob(
                org_id=org, type=job_type, payload={"url": "http://x", "body": {}}, priority=priority, max_attempts=1
            )
        )
        return job

    def kill(
        self, org: str, n: int = 1, *, code: str = "http_500", priority: str = "normal", job_type: str = "webhook"
    ) -> list[Job]:
        """n jobs of `org` that die in `priority`'s queue with error `code` (through the worker)."""
        jobs = [self.enqueue(org, priority=priority, job_type=job_type) for _ in range(n)]
        for job in jobs:
            self.failures[job.job_id] = FatalError(code, f"the receiver said {code}")
        self.work(priority)
        for job in jobs:
            self.failures.pop(job.job_id, None)
        return jobs

    def work(self, priority: str = "normal") -> None:
        """Run the worker over the source queue until nothing is visible, as the event source
        mapping would (burial messages are handed back until moto's redrive policy moves them)."""
        url = self.svc.queue.url_of(self.svc.settings.queue_name(priority))
        for _ in range(200):
            messages = self.svc.sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"], MessageAttributeNames=["All"]
            ).get("Messages", [])
            if not messages:
                return
            response = self.worker.handle_batch({"Records": [sqs_record(m) for m in messages]}, None, priority)
            failed = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
            for m in messages:
                if m["MessageId"] not in failed:
                    self.svc.sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        raise AssertionError("the queue did not settle")

    # --- running redrives -------------------------------------------------------------------

    def drain(self, budget_s: float = 60.0, max_runs: int = 1000) -> int:
        """Run the redrive worker for every pending invocation (as Lambda would); returns runs."""
        runs = 0
        while self.invocations and runs < max_runs:
            self.redrives.run(self.invocations.pop(0), budget_s)
            runs += 1
        return runs

    # --- looking -----------------------------------------------------------------------------

    def depth(self, name: str) -> Depth:
        return self.queue_ops.depth(name)

    def take(self, name: str) -> list[dict[str, Any]]:
        """Receive (and delete) every message of a queue: the envelopes."""
        url = self.svc.queue.url_of(name)
        bodies: list[dict[str, Any]] = []
        while True:
            messages = self.svc.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
            if not messages:
                return bodies
            for m in messages:
                bodies.append(json.loads(m["Body"]))
                self.svc.sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])

    def sent_counts(self, name: str) -> Counter[str]:
        return Counter(body["job_id"] for body in self.take(name))


def _cloudwatch() -> Any:
    from chalicelib import aws

    return aws.client("cloudwatch")
