"""Enqueueing and cancelling: the record first, then the message; nothing half-done."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from chalicelib.clock import Clock, utcnow
from chalicelib.errors import ApiError
from chalicelib.jobs.model import Job, new_job_id
from chalicelib.jobs.queue import JobQueue
from chalicelib.jobs.store import JobStore
from chalicelib.jobs.types import DEFAULTS
from chalicelib.jobs.worker import count
from chalicelib.observability import logger


@dataclass
class NewJob:
    org_id: str
    type: str
    payload: dict[str, Any]
    priority: str = "normal"
    delay_seconds: int = 0
    idempotency_key: str | None = None
    max_attempts: int | None = None
    backoff_seconds: int | None = None
    job_id: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    correlation_id: str | None = None


class JobService:
    def __init__(self, store: JobStore, queue: JobQueue, clock: Clock = utcnow) -> None:
        self.store = store
        self.queue = queue
        self._clock = clock

    def enqueue(self, spec: NewJob) -> tuple[Job, bool]:
        """Create the job and send its message; (existing job, False) for a repeated key or id.

        If the message cannot be sent, the record is removed again and the caller gets a 503:
        a job either exists with its message on a queue, or not at all.
        """
        now = self._clock()
        attempts, backoff = DEFAULTS.get(spec.type, (5, 2))
        job = Job(
            job_id=spec.job_id or new_job_id(),
            org_id=spec.org_id,
            type=spec.type,
            status="scheduled" if spec.delay_seconds > 0 else "queued",
            priority=spec.priority,
            created_at=now,
            run_at=now + timedelta(seconds=spec.delay_seconds),
            payload=spec.payload,
            meta=spec.meta,
            max_attempts=spec.max_attempts or attempts,
            backoff_seconds=spec.backoff_seconds or backoff,
            idempotency_key=spec.idempotency_key,
            correlation_id=spec.correlation_id or uuid.uuid4().hex,
        )
        stored, created = self.store.create(job)
        if not created:
            return stored, False
        try:
            self.queue.send(job)
        except Exception:
            logger.exception("enqueue failed: job record rolled back", extra={"job_id": job.job_id})
            self.store.delete(job)
            raise ApiError(
                503,
                "queue_unavailable",
                "The job could not be queued; nothing was created. Retry.",
                headers={"Retry-After": "1"},
            ) from None
        count("JobsEnqueued", job.type)
        return job, True
