"""The worker: what happens to one job message, and the batch loop around it.

For every message the outcome is one of: done (acknowledged), retried (made visible again after
an exponential backoff with jitter, reported as a batch item failure), or dead (the job record
says why, the ledger lists it, and its burial message goes to the DLQ by SQS's own redrive
policy, so that any redrive tool brings it back and it runs once more: chalicelib/jobs/burial.py).
Handlers run at most once per attempt:
a job runs only after a conditional write made it `active`, so a redelivered message for a
completed or cancelled job, or a duplicate delivered while it runs, does nothing.
A handler that raises `Deferred` (not now: quiet hours, a throughput cap) puts its job back to
`scheduled` at the new run_at, without counting the attempt, and the next hop is sent.

The records of one batch run concurrently (`HERALD_WORKER_CONCURRENCY` threads, default 10): a
job's time is almost all waiting on DynamoDB, SQS or an HTTP endpoint, and the records of a
standard queue's batch are independent (SQS promises no order). Each record runs in its own copy
of the invocation's context, so its log keys and deadline are its own.
"""

from __future__ import annotations

import contextvars
import functools
import random
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import MetricUnit, single_metric

from chalicelib.clock import Clock, utcnow
from chalicelib.config import Settings
from chalicelib.errors import Deferred, FatalError, JobError
from chalicelib.jobs.burial import POISON_MARKER, back_from_dlq
from chalicelib.jobs.ledger import DeadLetterLedger
from chalicelib.jobs.model import Envelope, EnvelopeError, Job
from chalicelib.jobs.queue import JobQueue
from chalicelib.jobs.store import JobStore
from chalicelib.observability import NAMESPACE, logger, metrics

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

MAX_ENVELOPE_BYTES = 4096
# A message may arrive a little before run_at (visibility rounding); closer than this runs now.
EARLY_TOLERANCE_S = 1.0
MAX_BACKOFF_S = 43_200
# When a job's effect happened but the table could not record it, its outcome is put back on the
# queue (an outcome message) to be recorded this much later, when the table may be back.
OUTCOME_DELAY_S = 10

Handler = Callable[[Job], "dict[str, Any] | None"]

# When the running Lambda invocation ends (time.monotonic()), for handlers that split long work
# across invocations (the digest fan-out); None outside a worker invocation (tests, scripts).
_INVOCATION_DEADLINE: ContextVar[float | None] = ContextVar("invocation_deadline", default=None)


def invocation_time_left() -> float | None:
    """Seconds left in the current worker invocation, or None when not known."""
    deadline = _INVOCATION_DEADLINE.get()
    return None if deadline is None else deadline - time.monotonic()


class RetryLater(Exception):
    """Raised to Powertools so the record is reported as a batch item failure."""


@dataclass
class Outcome:
    status: str  # completed | retry | dead | skipped | deferred
    job_id: str | None = None


def backoff_seconds(base: int, attempt: int, rng: Callable[[], float] = random.random) -> float:
    """Exponential backoff with 'equal jitter': half fixed, half random, capped by SQS's limit."""
    ceiling = float(min(MAX_BACKOFF_S, base * 2 ** max(attempt - 1, 0)))
    return ceiling / 2 + rng() * ceiling / 2


class Worker:
    def __init__(
        self,
        store: JobStore,
        queue: JobQueue,
        ledger: DeadLetterLedger,
        handlers: Mapping[str, Handler],
        settings: Settings,
        clock: Clock = utcnow,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self._store = store
        self._queue = queue
        self._ledger = ledger
        self._handlers = handlers
        self._settings = settings
        self._clock = clock
        self._rng = rng

    @property
    def _lease_s(self) -> int:
        """How long an attempt holds its job (a crashed worker's lease runs out after this)."""
        return self._settings.worker_timeout_s + 30

    def handle_batch(self, event: dict[str, Any], context: Any, priority: str) -> dict[str, Any]:
        """The SQS Lambda entry point: a partial batch response (ReportBatchItemFailures)."""
        # Imported here, not at the top: every function imports app.py (and so this module), and
        # only the workers need Powertools' batch utilities (about 50 ms of every cold start).
        from aws_lambda_powertools.utilities.batch import EventType, process_partial_response

        # A fully failed batch must stay a partial response naming every failed message, not
        # an exception that makes SQS retry the batch as a whole.
        processor = _concurrent_batch_processor()(
            self._settings.worker_concurrency, event_type=EventType.SQS, raise_on_entire_batch_failure=False
        )
        remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
        token = _INVOCATION_DEADLINE.set(time.monotonic() + remaining_ms() / 1000 if callable(remaining_ms) else None)
        try:
            response = process_partial_response(
                event=event,
                record_handler=lambda record: self.process(record, priority),
                processor=processor,
                context=context,
            )
            return dict(response)
        finally:
            _INVOCATION_DEADLINE.reset(token)

    def process(self, record: SQSRecord, priority: str) -> Outcome:
        body = record.body or ""
        try:
            if len(body.encode()) > MAX_ENVELOPE_BYTES:
                raise EnvelopeError("oversized_envelope", f"the message body is over {MAX_ENVELOPE_BYTES} bytes")
            envelope = Envelope.from_json(body)
        except EnvelopeError as err:
            self._dead_letter_poison(record, priority, err.code, str(err))
            return Outcome("dead")
        # Thread-safe keys live in this record's context (records of a batch run side by side).
        logger.thread_safe_append_keys(
            job_id=envelope.job_id, org_id=envelope.org_id, correlation_id=envelope.correlation_id
        )
        try:
            return self._process(envelope, record, priority)
        finally:
            logger.thread_safe_remove_keys(["job_id", "org_id", "correlation_id"])

    def _process(self, envelope: Envelope, record: SQSRecord, priority: str) -> Outcome:
        lease_s = self._lease_s
        if envelope.burial is None and record.attributes.dead_letter_queue_source_arn:
            # Back from the DLQ without a burial: SQS moved it there on its own (its receive count
            # ran out) and the ledger may list it (chalicelib/ops/dlq.py `reconcile`); it runs now.
            self._ledger.remove(self._queue.queue_name(priority), envelope.org_id, envelope.job_id)
        if envelope.outcome is None:
            # The common case in one write: a due job of the envelope's type, not final, not
            # running, starts here. Anything else fails the condition; the job is then read to
            # see why (the rules below, in order).
            started = self._store.begin_attempt(
                envelope.org_id,
                envelope.job_id,
                lease_s,
                job_type=envelope.type,
                due_by=self._clock() + timedelta(seconds=EARLY_TOLERANCE_S),
            )
            if started is not None:
                return self._run(started, record, priority)
        job = self._store.get(envelope.org_id, envelope.job_id)
        if job is None:
            # Unknown in that org: forged, wrong-org, or expired long ago. Never runs.
            self._dead_letter_poison(record, priority, "job_not_found", "no such job in the envelope's organization")
            return Outcome("dead")
        if job.type != envelope.type:
            self._dead_letter_poison(record, priority, "envelope_mismatch", "the envelope's type is not the job's")
            return Outcome("dead")
        if job.status == "dead":
            return self._dead_job_message(job, envelope, record, priority)
        if job.is_final:
            logger.info("job already final: message dropped", extra={"status": job.status})
            return Outcome("skipped", job.job_id)
        if envelope.outcome is not None:
            return self._record_outcome(job, envelope)
        now = self._clock()
        if job.status != "failed" and (job.run_at - now).total_seconds() > EARLY_TOLERANCE_S:
            # A long delay travels in hops of at most 900 s (SQS's cap): send the next hop.
            self._queue.send(job)
            logger.info("job not due yet: next hop sent", extra={"run_at": job.run_at.isoformat()})
            return Outcome("deferred", job.job_id)
        # Not final, of its type and due, yet the start above was refused: the job is `active`
        # under a live lease (a duplicate delivery while another invocation runs it, or this very
        # attempt, applied by DynamoDB with its answer lost and the SDK's retry refused), or it
        # changed in between. Dropping the message could leave a job `active` with nothing left
        # to finish it: it is kept, hidden until the lease has run out (a second otherwise), and
        # comes back to find the job final (dropped then) or to take over the expired lease.
        wait = lease_s + 1 if job.status == "active" else 1
        self._queue.retry_after(priority, record.receipt_handle, wait)
        logger.info("job not startable now: message kept", extra={"status": job.status, "retry_in_s": wait})
        raise RetryLater("job_busy")

    def _dead_job_message(self, job: Job, envelope: Envelope, record: SQSRecord, priority: str) -> Outcome:
        """A message of a dead job: its burial message on the way to the DLQ (handed back) or
        back from it (the job revives and runs), or anything else (dropped)."""
        queue_name = self._queue.queue_name(priority)
        if envelope.burial is None:
            entry = self._ledger.get(queue_name, job.org_id, job.job_id) if job.burial else None
            if job.burial and (entry is None or entry.get("burial") != job.burial):
                # The job died but its burial message was not sent (the send failed): send it now.
                self._ledger.bury(self._queue, priority, job, job.error or {})
                logger.warning("dead job's burial message was missing: sent")
                return Outcome("dead", job.job_id)
            logger.info("job already dead: message dropped")
            return Outcome("skipped", job.job_id)
        if envelope.burial != job.burial:
            logger.info("burial message of an earlier death: dropped")
            return Outcome("skipped", job.job_id)
        receives = _receive_count(record)
        if not back_from_dlq(record.attributes.dead_letter_queue_source_arn, receives, job.burial_receives):
            self._store.note_burial_receive(job, receives)
            self._queue.hand_back(priority, record.receipt_handle)
            raise RetryLater("burying")
        revived = self._store.requeue(job.org_id, job.job_id, burial=job.burial)
        if revived is None:
            logger.info("dead job revived already: message dropped")
            return Outcome("skipped", job.job_id)
        self._ledger.remove(queue_name, job.org_id, job.job_id, burial=envelope.burial)
        self._count("JobsRedriven", job)
        logger.info("dead job back from the DLQ: it runs again from attempt 1")
        started = self._store.begin_attempt(job.org_id, job.job_id, self._lease_s)
        if started is None:  # changed in between (cancelled?): let the next receive decide
            self._queue.retry_after(priority, record.receipt_handle, 1)
            raise RetryLater("job_busy")
        return self._run(started, record, priority)

    def _run(self, job: Job, record: SQSRecord, priority: str) -> Outcome:
        handler = self._handlers.get(job.type)
        try:
            if handler is None:
                raise FatalError("unknown_job_type", f"no handler for job type {job.type!r}")
            result = handler(job)
        except Deferred as deferral:
            return self._deferred(job, deferral)
        except JobError as err:
            return self._failed(job, record, priority, err)
        except Exception as err:  # a bug or an outage we did not foresee: retry, keep the trace
            logger.exception("handler raised")
            error = JobError("internal_error", f"{type(err).__name__}: {err}"[:500])
            return self._failed(job, record, priority, error)
        try:
            recorded = self._store.complete(job, result)
        except Exception:
            # The effect happened, but the table could not be told (an outage). If this message
            # came back, the handler would run again and repeat the effect; so the outcome itself
            # goes on the queue, and this message is done. Only if that fails too is it retried.
            logger.exception("job done but not recorded: its outcome goes back on the queue")
            self._queue.send_outcome(job, result, OUTCOME_DELAY_S, MAX_ENVELOPE_BYTES)
            self._count("JobOutcomesRequeued", job)
            return Outcome("completed", job.job_id)
        if recorded is None:
            logger.warning("job changed while it ran; result not recorded")
        else:
            self._count("JobsCompleted", job)
            latency = (self._clock() - job.created_at).total_seconds() * 1000
            metrics.add_metric(name="JobLatency", unit=MetricUnit.Milliseconds, value=latency)
        logger.info("job completed", extra={"attempts": job.attempts})
        return Outcome("completed", job.job_id)

    def _record_outcome(self, job: Job, envelope: Envelope) -> Outcome:
        """An outcome message (see `Envelope.outcome`): record it; the handler does not run."""
        if job.status != "active" or job.attempts != envelope.attempt:
            logger.warning(
                "outcome of an attempt that is not the job's current one: dropped",
                extra={"attempt": envelope.attempt, "status": job.status},
            )
            return Outcome("skipped", job.job_id)
        result = (envelope.outcome or {}).get("result")
        if self._store.complete(job, result) is None:
            logger.warning("job changed meanwhile; outcome not recorded")
            return Outcome("skipped", job.job_id)
        self._count("JobsCompleted", job)
        logger.info("job completed (its outcome came back from the queue)", extra={"attempts": job.attempts})
        return Outcome("completed", job.job_id)

    def _deferred(self, job: Job, deferral: Deferred) -> Outcome:
        # Record first, then send: if the send fails, the exception makes this message a batch
        # item failure, so it comes back and finds the job `scheduled` (not lost either way).
        rescheduled = self._store.reschedule(job, deferral.run_at, deferral.decision)
        if rescheduled is None:
            logger.warning("job changed while it ran (lease taken over); not rescheduled")
            return Outcome("skipped", job.job_id)
        self._queue.send(rescheduled)
        self._count("JobsDeferred", job)
        logger.info("job deferred", extra={"reason": deferral.reason, "run_at": rescheduled.run_at.isoformat()})
        return Outcome("deferred", job.job_id)

    def _failed(self, job: Job, record: SQSRecord, priority: str, err: JobError) -> Outcome:
        error = err.as_dict()
        if not err.retryable or job.attempts >= job.max_attempts:
            if err.retryable:
                error["message"] = f"{err.message} (gave up after {job.attempts} attempts)"
            self._kill(job, record, priority, error)
            return Outcome("dead", job.job_id)
        delay = getattr(err, "retry_after", None)
        if delay is None:
            delay = backoff_seconds(job.backoff_seconds, job.attempts, self._rng)
        delay = min(float(delay), MAX_BACKOFF_S)
        self._store.mark_failed(job, error, self._clock() + timedelta(seconds=delay))
        self._queue.retry_after(priority, record.receipt_handle, delay)
        self._count("JobsFailed", job)
        logger.warning("attempt failed, retrying", extra={"error": error, "retry_in_s": round(delay, 1)})
        raise RetryLater(err.code)

    def _kill(self, job: Job, record: SQSRecord, priority: str, error: dict[str, Any]) -> None:
        # Record first: once the job is `dead`, no redelivery can run it again (only its burial
        # message, back from the DLQ, revives it).
        dead = self._store.kill(job, error)
        if dead is None:
            logger.warning("job changed while it ran (lease taken over); not dead-lettered")
            return
        self._ledger.bury(self._queue, priority, dead, error)
        self._count("JobsDead", job)
        logger.error("job dead", extra={"error": error, "attempts": job.attempts})

    def _dead_letter_poison(self, record: SQSRecord, priority: str, code: str, message: str) -> None:
        """A message that is not a runnable job: a copy with the reason attached goes to the DLQ
        (by SQS's redrive policy, like a burial message); the copy itself is handed back."""
        attributes = record.message_attributes
        if _attribute(attributes, POISON_MARKER):
            self._queue.hand_back(priority, record.receipt_handle)
            raise RetryLater("burying")
        org_id = _attribute(attributes, "org_id")
        self._queue.send_to_bury(
            priority,
            record.body or "-",
            {"error_code": code, "error_message": message, "org_id": org_id, POISON_MARKER: "1"},
            group=org_id,
        )
        metrics.add_metric(name="PoisonMessages", unit=MetricUnit.Count, value=1)
        logger.error("poison message dead-lettered", extra={"error_code": code, "reason": message})

    def _count(self, name: str, job: Job) -> None:
        count(name, job.type)


@functools.cache
def _concurrent_batch_processor() -> type:
    """Powertools' BatchProcessor, running a batch's records on a thread pool (built on first use,
    so that importing this module does not import Powertools' batch utilities)."""
    from aws_lambda_powertools.utilities.batch import BatchProcessor

    class ConcurrentBatchProcessor(BatchProcessor):
        def __init__(self, concurrency: int, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self._concurrency = concurrency

        def process(self) -> list[tuple[Any, ...]]:
            workers = min(self._concurrency, len(self.records))
            if workers <= 1:
                return super().process()
            # `_process_record` catches a record's exceptions and files it as a failure (the
            # success and failure lists are appended to from the threads: list.append is atomic).
            # Anything it lets through (SystemExit) is re-raised here, after every record ended.
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="record") as pool:
                futures = [
                    pool.submit(contextvars.copy_context().run, self._process_record, record) for record in self.records
                ]
            return [future.result() for future in futures]

    return ConcurrentBatchProcessor


def count(name: str, job_type: str) -> None:
    """A count by job type: its own EMF blob, so types in one batch do not mix dimensions."""
    with single_metric(name=name, unit=MetricUnit.Count, value=1, namespace=NAMESPACE) as metric:
        metric.add_dimension(name="type", value=job_type)


def _receive_count(record: SQSRecord) -> int:
    try:
        return int(record.attributes.approximate_receive_count or 0)
    except (TypeError, ValueError):
        return 0


def _attribute(attributes: Any, name: str) -> str:
    """A string message attribute of an SQS record, or "" (poison messages may have none)."""
    value = (attributes or {}).get(name) or {}
    return str(value.get("stringValue") or "")
