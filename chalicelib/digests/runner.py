"""Digest runs: the EventBridge scheduler, `POST /v1/digests/run`, and the fan-out job they start.

How a run flows (every arrow is idempotent, so every step may be repeated):

* **scheduler** (``DigestScheduler``, the ``digest_scheduler`` Lambda, fired every quarter hour
  by the EventBridge rule Chalice deploys): enqueues one tick job, ``digest:schedule:{tick}`` in
  the pseudo-organization ``_platform``, for the event's time floored to the tick. A duplicate
  delivery of the event (EventBridge retries; LocalStack fires twice after a redeploy) finds the
  id taken and enqueues nothing. The Lambda does nothing per organization, so it cannot run out
  of time however many there are.
* **tick job** (scope ``schedule``): for each organization, in id order and resumable, the kinds
  with at least one recipient due at the tick, and one fan-out job per (org, kind) with the id
  ``digest:{kind}:tick:{tick}``.
* **run now** (``start_run``): one ``digest`` job for the caller's organization, or for the
  operator's "all" a parent job (in the pseudo-organization ``_platform``) that enqueues one
  child per organization (``{parent_id}:{org}``).
* **fan-out** (``DigestFanout``, the ``digest`` job handler): reads the organization's recipients
  in ``user_id`` order, selects the due ones (scheduled) or every subscriber of the kind (run
  now), and for each writes one ``digest_email`` job record with the id
  ``digest:{kind}:{period}:{user_id}`` (conditional: an existing id is skipped), then sends the
  new jobs' messages with SendMessageBatch, ten per call. That id is the digest's identity
  (recipient, kind, period): however many runs, retries or redeliveries, one job per period,
  and the worker runs a job at most once to completion, so one email.
* **per recipient** (``handlers/digest.py``): render and send through SES.

Records before messages, with a journal. The fan-out's progress lives next to its job record
(sk ``FANOUT``): the cursor (last ``user_id`` done) and ``in_flight``, ids whose records may be
written but whose messages are not confirmed sent. Per chunk it is saved before the records are
written, after them (cursor past the chunk) and once SQS took the messages; a retry after a
crash anywhere in between first resends the ``in_flight`` records still ``queued`` (a duplicate
message is harmless: the worker drops a message whose job is no longer queued), then goes on
from the cursor. Nothing is lost, and nothing is created twice.

Splitting across invocations: a fan-out works in chunks of at most ``chunk_size`` selected
recipients until its budget (the worker invocation's time left minus a margin, at most
``max_run_s``) is spent, then raises ``Deferred`` to now: the job goes back to ``scheduled``
without using an attempt, its next message starts a fresh invocation, which resumes at the
cursor. Chunks after the first are sized from the measured time per recipient, so a slow table
or queue makes chunks smaller instead of running the invocation past its budget.

The summary (counts over the org's jobs in the period's window) is computed once per distinct
window per run and kept in the journal, so every recipient of one run reads the same numbers,
and the per-recipient job only renders.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any, cast

from chalicelib.clock import Clock, iso, parse_iso, utcnow
from chalicelib.ddb import from_item, to_item, values
from chalicelib.digests.content import DigestSummary, summarize
from chalicelib.digests.fanout import SQSBatchClient, send_in_batches
from chalicelib.digests.schedule import KINDS, Kind, due_recipients, floor_to_tick, period_id, period_window
from chalicelib.errors import ApiError, Deferred, RetryableError
from chalicelib.jobs.model import Job, new_job_id
from chalicelib.jobs.queue import JobQueue
from chalicelib.jobs.service import JobService, NewJob
from chalicelib.jobs.store import JobStore, job_pk
from chalicelib.observability import logger
from chalicelib.recipients import Recipient, RecipientStore

FANOUT_TYPE = "digest"
EMAIL_TYPE = "digest_email"
# Where the operator's "all organizations" run lives: not an organization, never in `org_ids()`.
PLATFORM_ORG = "_platform"
FANOUT_PRIORITY = "normal"
EMAIL_PRIORITY = "low"  # digests never delay alerts: they queue behind nothing urgent
EMAIL_MAX_ATTEMPTS = 5
EMAIL_BACKOFF_S = 30
PROGRESS_SK = "FANOUT"
SCHEDULER_PK = "DIGESTS#SCHEDULER"
RECORD_TTL = timedelta(days=30)

CHUNK_SIZE = 500  # selected recipients per chunk at most: 50 full SendMessageBatch calls
BATCH = 10  # SendMessageBatch's limit: chunks are multiples of it, so every batch is full
MAX_RUN_S = 15.0  # work per invocation at most (the worker Lambda's timeout is 30 s)
SAFETY_S = 8.0  # left for the chunk in progress, the journal and the worker's own bookkeeping
MIN_START_S = 2.0  # less than this left at the start: continue in a fresh invocation


def digest_job_id(kind: str, period: str, user_id: str) -> str:
    """The identity of one digest: (organization, implied by the key), recipient, kind, period."""
    return f"digest:{kind}:{period}:{user_id}"


def scheduled_job_id(kind: str, tick: datetime) -> str:
    """One organization's fan-out of one kind at one scheduler tick."""
    return f"digest:{kind}:tick:{tick.strftime('%Y-%m-%dT%H:%MZ')}"


def tick_job_id(tick: datetime) -> str:
    """The tick job (in `_platform`): which organizations have digests due at this tick."""
    return f"digest:schedule:{tick.strftime('%Y-%m-%dT%H:%MZ')}"


# --- the journal --------------------------------------------------------------------------------


@dataclass
class Progress:
    """A fan-out's state, saved next to its job record (see the module docstring)."""

    cursor: str | None = None
    in_flight: list[str] = field(default_factory=list)
    written: bool = True  # False: in_flight was journaled before its records were written
    failed: list[str] = field(default_factory=list)  # a tick job's organizations to try again
    enqueued: list[str] = field(default_factory=list)  # a tick job's fan-outs, "{org}/{job_id}"
    per_target: float | None = None  # measured seconds per selected recipient (sizes chunks)
    summaries: dict[str, dict[str, Any]] = field(default_factory=dict)
    periods: list[str] = field(default_factory=list)
    examined: int = 0
    selected: int = 0
    created: int = 0
    existing: int = 0
    resent: int = 0
    messages: int = 0
    sqs_send_calls: int = 0
    chunks: int = 0
    invocations: int = 0
    done: bool = False

    def tallies(self) -> dict[str, Any]:
        return {
            "recipients_examined": self.examined,
            "recipients_selected": self.selected,
            "jobs_created": self.created,
            "jobs_existing": self.existing,
            "messages_sent": self.messages,
            "messages_resent": self.resent,
            "sqs_send_calls": self.sqs_send_calls,
            "chunks": self.chunks,
            "invocations": self.invocations,
        }


class ProgressStore:
    def __init__(self, ddb: Any, table: str, clock: Clock = utcnow) -> None:
        self._ddb = ddb
        self._table = table
        self._clock = clock

    def _key(self, org_id: str, job_id: str) -> dict[str, Any]:
        return to_item({"pk": job_pk(org_id, job_id), "sk": PROGRESS_SK})

    def load(self, org_id: str, job_id: str) -> Progress:
        item = self._ddb.get_item(TableName=self._table, Key=self._key(org_id, job_id), ConsistentRead=True).get("Item")
        if not item:
            return Progress()
        state = json.loads(from_item(item)["state"])
        known = {f.name for f in fields(Progress)}
        return Progress(**{k: v for k, v in state.items() if k in known})

    def save(self, org_id: str, job_id: str, progress: Progress) -> None:
        expires = int((self._clock() + RECORD_TTL).timestamp())
        self._ddb.put_item(
            TableName=self._table,
            Item={
                **self._key(org_id, job_id),
                **to_item({"state": json.dumps(asdict(progress), separators=(",", ":")), "expires_at": expires}),
            },
        )


# --- summaries carried in the per-recipient job -------------------------------------------------

_COUNTS = ("alerts_sent", "alerts_suppressed", "alerts_failed", "escalations_fired", "alerts_pending")


def counts_of(summary: DigestSummary) -> dict[str, Any]:
    counts: dict[str, Any] = {name: getattr(summary, name) for name in _COUNTS}
    counts["by_alert_type"] = dict(summary.by_alert_type)
    return counts


def summary_from_payload(org_id: str, payload: Mapping[str, Any]) -> DigestSummary:
    """The DigestSummary a `digest_email` job renders (its payload holds window and counts)."""
    counts = payload["summary"]
    summary = DigestSummary(
        org_id=org_id,
        kind=cast(Kind, payload["kind"]),
        period=str(payload["period"]),
        window_start=parse_iso(payload["window_start"]),
        window_end=parse_iso(payload["window_end"]),
        by_alert_type={str(k): int(v) for k, v in (counts.get("by_alert_type") or {}).items()},
    )
    for name in _COUNTS:
        setattr(summary, name, int(counts.get(name, 0)))
    return summary


# --- the fan-out ----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=2048)
def _period_and_window(kind: Kind, tz: str, at: datetime) -> tuple[str, tuple[datetime, datetime]]:
    """Per (kind, zone, instant): 10,000 recipients share a few dozen zones."""
    return period_id(kind, tz, at), period_window(kind, tz, at)


@dataclass
class _Chunk:
    targets: list[Recipient]
    cursor: str | None
    examined: int
    exhausted: bool


class DigestFanout:
    """The `digest` job handler: one organization's run (or, in `_platform`, every org's)."""

    def __init__(
        self,
        store: JobStore,
        recipients: RecipientStore,
        jobs: JobService,
        queue: JobQueue,
        sqs: SQSBatchClient,
        progress: ProgressStore,
        org_ids: Callable[[], list[str]],
        *,
        clock: Clock = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
        time_left: Callable[[], float | None] = lambda: None,
        sleep: Callable[[float], None] = time.sleep,
        chunk_size: int = CHUNK_SIZE,
        max_run_s: float = MAX_RUN_S,
        write_concurrency: int = 16,
    ) -> None:
        self._store = store
        self._recipients = recipients
        self._jobs = jobs
        self._queue = queue
        self._sqs = sqs
        self._progress = progress
        self._org_ids = org_ids
        self._clock = clock
        self._monotonic = monotonic
        self._time_left = time_left
        self._sleep = sleep
        self._chunk_size = chunk_size
        self._max_run_s = max_run_s
        self._write_concurrency = write_concurrency

    def __call__(self, job: Job) -> dict[str, Any]:
        payload = job.payload
        at = parse_iso(payload["at"])
        scope = payload.get("scope")
        if scope == "schedule":
            return self._run_schedule(job, at)
        kind = cast(Kind, payload["kind"])
        if scope == "all":
            return self._run_all(job, kind, at)
        return self._run_org(job, kind, str(payload.get("mode") or "now"), at)

    # --- a scheduler tick: which organizations have digests due -----------------------------

    def _run_schedule(self, job: Job, tick: datetime) -> dict[str, Any]:
        """For each organization (in id order, resumable), the kinds due at `tick`, and one
        fan-out job per (org, kind), id `digest:{kind}:tick:{tick}`. An organization whose check
        fails is skipped and retried at the end (the job fails, the worker retries it), so one
        organization's trouble never costs the others their digests."""
        progress = self._progress.load(job.org_id, job.job_id)
        progress.invocations += 1
        deadline = self._monotonic() + self._budget()
        todo = list(progress.failed) + [
            org for org in sorted(self._org_ids()) if progress.cursor is None or org > progress.cursor
        ]
        progress.failed = []
        for n, org_id in enumerate(todo):
            if n and self._monotonic() >= deadline:  # at least one organization per invocation
                reason = "digest_schedule_continues"
                raise Deferred(self._clock(), reason, self._decision(progress, "budget spent", reason))
            try:
                for kind in due_kinds(self._recipients, org_id, tick):
                    fanout, created = self._jobs.enqueue(
                        NewJob(
                            org_id=org_id,
                            type=FANOUT_TYPE,
                            payload={"kind": kind, "mode": "scheduled", "at": iso(tick)},
                            priority=FANOUT_PRIORITY,
                            job_id=scheduled_job_id(kind, tick),
                            correlation_id=job.correlation_id,
                        )
                    )
                    if created:
                        progress.enqueued.append(f"{org_id}/{fanout.job_id}")
            except Exception:
                logger.exception("digest scheduling failed for an organization", extra={"org_id": org_id})
                progress.failed.append(org_id)
            progress.examined += 1
            if progress.cursor is None or org_id > progress.cursor:
                progress.cursor = org_id
            self._progress.save(job.org_id, job.job_id, progress)
        if progress.failed:
            raise RetryableError(
                "digest_schedule_incomplete",
                f"scheduling failed for {len(progress.failed)} organization(s): {', '.join(progress.failed[:10])}",
            )
        return {"tick": iso(tick), "organizations": progress.examined, "fanout_jobs": progress.enqueued}

    # --- every organization: one child run each --------------------------------------------

    def _run_all(self, job: Job, kind: Kind, at: datetime) -> dict[str, Any]:
        children = []
        for org_id in self._org_ids():
            try:
                child, created = self._jobs.enqueue(
                    NewJob(
                        org_id=org_id,
                        type=FANOUT_TYPE,
                        payload={"kind": kind, "mode": "now", "at": iso(at), "parent_job_id": job.job_id},
                        priority=FANOUT_PRIORITY,
                        job_id=f"{job.job_id}:{org_id}",
                        correlation_id=job.correlation_id,
                    )
                )
            except ApiError as err:  # the queue refused: the parent's retry enqueues the rest
                raise RetryableError("queue_unavailable", err.message) from None
            children.append({"org_id": org_id, "job_id": child.job_id, "created": created})
        return {"scope": "all", "kind": kind, "at": iso(at), "organizations": len(children), "jobs": children}

    # --- one organization ------------------------------------------------------------------

    def _budget(self) -> float:
        left = self._time_left()
        return self._max_run_s if left is None else min(self._max_run_s, left - SAFETY_S)

    def _run_org(self, job: Job, kind: Kind, mode: str, at: datetime) -> dict[str, Any]:
        progress = self._progress.load(job.org_id, job.job_id)
        budget = self._budget()
        if budget < MIN_START_S and not (progress.done and not progress.in_flight):
            raise Deferred(self._clock(), "digest_fanout_continues", self._decision(progress, "no time left"))
        progress.invocations += 1
        deadline = self._monotonic() + budget
        ours: set[str] = set()
        if progress.in_flight:  # an earlier try wrote these and may not have sent them
            ours = self._resend(job, progress)
        per_target = progress.per_target  # seconds one selected recipient took, as last measured
        first = True  # every invocation does at least one batch: progress is guaranteed
        while not progress.done:
            size = self._next_size(deadline, per_target)
            if first:
                size, first = max(size, min(BATCH, self._chunk_size)), False
            if size == 0:
                logger.info("digest fan-out continues in a new invocation", extra=progress.tallies())
                raise Deferred(self._clock(), "digest_fanout_continues", self._decision(progress, "budget spent"))
            started = self._monotonic()
            chunk = self._next_chunk(job.org_id, kind, mode, at, progress.cursor, deadline, size)
            self._fan_out(job, kind, at, chunk, progress, ours)
            if len(chunk.targets) >= BATCH:
                measured = (self._monotonic() - started) / len(chunk.targets)
                per_target = measured if per_target is None else max(measured, (per_target + measured) / 2)
                progress.per_target = per_target  # saved with the next journal write
        result = {"kind": kind, "mode": mode, "at": iso(at), "periods": sorted(progress.periods), **progress.tallies()}
        logger.info("digest fan-out done", extra=result)
        return result

    def _next_size(self, deadline: float, per_target: float | None) -> int:
        """How many recipients the next chunk may select: `chunk_size`, or fewer when the time one
        recipient takes (measured on this invocation's chunks, so slow storage is accounted for)
        says more would overrun the budget; 0 when not even one batch of ten fits any more."""
        left = deadline - self._monotonic()
        if left <= 0:
            return 0
        if per_target is None:
            return self._chunk_size
        fits = int(left / per_target) // BATCH * BATCH
        return min(self._chunk_size, fits)

    def _decision(self, progress: Progress, why: str, reason: str = "digest_fanout_continues") -> dict[str, Any]:
        """What a job waiting between invocations shows as `result.deferred`: how far it got."""
        return {"reason": reason, "why": why, "cursor": progress.cursor, **progress.tallies()}

    def _next_chunk(
        self, org_id: str, kind: Kind, mode: str, at: datetime, cursor: str | None, deadline: float, size: int
    ) -> _Chunk:
        """Up to `size` selected recipients after `cursor`; stops early at the deadline."""
        seen: dict[str, Any] = {"last": cursor, "count": 0, "cut": False}

        def scanned() -> Iterator[Recipient]:
            for recipient in self._recipients.iter_after(org_id, cursor, page_size=min(1000, self._chunk_size * 2)):
                if seen["count"] and self._monotonic() >= deadline:
                    seen["cut"] = True
                    return
                seen["last"] = recipient.user_id
                seen["count"] += 1
                yield recipient

        selected: Iterator[Recipient] = (
            due_recipients(scanned(), kind, at) if mode == "scheduled" else (r for r in scanned() if kind in r.digests)
        )
        targets: list[Recipient] = []
        full = False
        for recipient in selected:
            targets.append(recipient)
            if len(targets) >= size:
                full = True
                break
        return _Chunk(targets, seen["last"], int(seen["count"]), exhausted=not full and not seen["cut"])

    def _summary(self, org_id: str, kind: Kind, start: datetime, end: datetime, progress: Progress) -> dict[str, Any]:
        key = f"{iso(start)}|{iso(end)}"
        if key not in progress.summaries:
            summary = summarize(
                self._store.iter_created(org_id, start, end),
                org_id=org_id,
                kind=kind,
                period="",
                window_start=start,
                window_end=end,
            )
            progress.summaries[key] = counts_of(summary)
        return progress.summaries[key]

    def _digest_job(
        self, parent: Job, kind: Kind, at: datetime, recipient: Recipient, progress: Progress
    ) -> Job | None:
        try:
            period, (start, end) = _period_and_window(kind, recipient.timezone, at)
        except ValueError as exc:  # a zone this runtime cannot resolve: skip, never fail the run
            logger.warning("digest recipient skipped", extra={"user_id": recipient.user_id, "reason": str(exc)})
            return None
        if period not in progress.periods:
            progress.periods.append(period)
        now = self._clock()
        return Job(
            job_id=digest_job_id(kind, period, recipient.user_id),
            org_id=parent.org_id,
            type=EMAIL_TYPE,
            status="queued",
            priority=EMAIL_PRIORITY,
            created_at=now,
            run_at=now,
            payload={
                "user_id": recipient.user_id,
                "email": recipient.email,
                "timezone": recipient.timezone,
                "kind": kind,
                "period": period,
                "window_start": iso(start),
                "window_end": iso(end),
                "summary": self._summary(parent.org_id, kind, start, end, progress),
            },
            meta={"fanout_job_id": parent.job_id},
            max_attempts=EMAIL_MAX_ATTEMPTS,
            backoff_seconds=EMAIL_BACKOFF_S,
            correlation_id=parent.correlation_id,
        )

    def _fan_out(
        self, parent: Job, kind: Kind, at: datetime, chunk: _Chunk, progress: Progress, ours: set[str]
    ) -> None:
        """One chunk: journal, write the new records, advance the cursor, send their messages.

        The journal is saved before the writes (`in_flight` = the ids about to be written,
        `written` False) and again after them (cursor past the chunk, `in_flight` = the ids
        written and not yet sent, `written` True), then cleared once SQS took every message: a
        retry after any crash resends exactly what may be unsent (`_resend`) and goes on from the
        cursor. `ours`: ids a resend just sent, which this run wrote (not "existing" ones).
        """
        org_id = parent.org_id
        built = [self._digest_job(parent, kind, at, recipient, progress) for recipient in chunk.targets]
        jobs = {job.job_id: job for job in built if job is not None}
        statuses = self._store.statuses(org_id, list(jobs)) if jobs else {}
        fresh = [job for job_id, job in jobs.items() if job_id not in statuses]
        if fresh:
            progress.in_flight, progress.written = [job.job_id for job in fresh], False
            self._progress.save(org_id, parent.job_id, progress)
        created = self._store.create_many(fresh, max_workers=self._write_concurrency)
        progress.cursor = chunk.cursor
        progress.done = chunk.exhausted
        progress.examined += chunk.examined
        progress.selected += len(jobs)
        progress.created += len(created)
        progress.existing += sum(1 for job_id in jobs if job_id not in ours) - len(created)
        progress.chunks += 1
        progress.in_flight, progress.written = [job.job_id for job in created], True
        self._progress.save(org_id, parent.job_id, progress)
        if created:
            self._send(parent, created, progress)

    def _resend(self, parent: Job, progress: Progress) -> set[str]:
        """Send the messages of the journal's `in_flight` records that are still queued (a
        duplicate message is harmless; a missing one would leave the job waiting forever)."""
        org_id = parent.org_id
        statuses = self._store.statuses(org_id, progress.in_flight)
        unsent = [
            job
            for job_id in progress.in_flight
            if statuses.get(job_id) == "queued" and (job := self._store.get(org_id, job_id)) is not None
        ]
        if not progress.written:  # written by the try that died before counting them
            progress.created += len(unsent)
        progress.resent += len(unsent)
        logger.warning("resending digest messages an earlier try may not have sent", extra={"count": len(unsent)})
        self._send(parent, unsent, progress)
        return {job.job_id for job in unsent}

    def _send(self, parent: Job, jobs: Sequence[Job], progress: Progress) -> None:
        """SendMessageBatch, ten a call; then `in_flight` is cleared, or narrowed to the failed."""
        if jobs:
            entries = [self._queue.batch_entry(job, f"m{i}") for i, job in enumerate(jobs)]
            report = send_in_batches(self._sqs, self._queue.queue_url(EMAIL_PRIORITY), entries, sleep=self._sleep)
            progress.sqs_send_calls += report.calls
            progress.messages += report.sent
            if report.failed:
                by_entry = {entry["Id"]: job.job_id for entry, job in zip(entries, jobs, strict=True)}
                progress.in_flight = [by_entry[f.id] for f in report.failed if f.id in by_entry]
                progress.written = True
                self._progress.save(parent.org_id, parent.job_id, progress)
                codes = sorted({failure.code for failure in report.failed})
                raise RetryableError(
                    "digest_fanout_incomplete",
                    f"{len(report.failed)} digest messages could not be queued ({', '.join(codes)}); retrying them.",
                )
        progress.in_flight = []
        self._progress.save(parent.org_id, parent.job_id, progress)


# --- run now -----------------------------------------------------------------------------------


def start_run(jobs: JobService, kind: Kind, org_id: str | None, now: datetime) -> Job:
    """Enqueue a run of `kind` now: for `org_id`, or for every organization when None."""
    payload: dict[str, Any] = {"kind": kind, "mode": "now", "at": iso(now)}
    if org_id is None:
        payload["scope"] = "all"
    job, _ = jobs.enqueue(
        NewJob(
            org_id=org_id or PLATFORM_ORG,
            type=FANOUT_TYPE,
            payload=payload,
            priority=FANOUT_PRIORITY,
            job_id=new_job_id(),
        )
    )
    return job


# --- the scheduler ---------------------------------------------------------------------------


def event_tick(event: Mapping[str, Any], clock: Clock = utcnow) -> datetime:
    """The tick a scheduled event stands for: its `time` (the scheduled instant, the same on a
    retry or duplicate delivery), floored to the quarter hour; the clock's when it has none."""
    raw = event.get("time")
    try:
        moment = parse_iso(str(raw)) if raw else clock()
    except ValueError:
        logger.warning("scheduled event without a readable time: using the clock", extra={"time": str(raw)[:64]})
        moment = clock()
    return floor_to_tick(moment)


def due_kinds(recipients: RecipientStore, org_id: str, tick: datetime) -> list[Kind]:
    """The kinds for which at least one of the org's recipients is due at `tick`: one pass over
    the org's recipients, `is_due` once per (kind, zone), stopping once every kind is due."""
    pending: set[Kind] = set(KINDS)
    due: set[Kind] = set()
    decided: set[tuple[Kind, str]] = set()
    for recipient in recipients.iter_after(org_id, None, page_size=1000):
        for kind in list(pending):
            if kind not in recipient.digests or (kind, recipient.timezone) in decided:
                continue
            decided.add((kind, recipient.timezone))
            if any(True for _ in due_recipients([recipient], kind, tick)):
                due.add(kind)
                pending.discard(kind)
        if not pending:
            break
    return [kind for kind in KINDS if kind in due]


class DigestScheduler:
    """The `digest_scheduler` Lambda: one idempotent tick job per tick, and a record of the run.

    It does no per-organization work itself (that is the tick job's, resumable in the worker),
    so it ends in milliseconds however many organizations and recipients there are, and a
    duplicate delivery of the event finds the tick job's id taken and enqueues nothing.
    """

    def __init__(self, jobs: JobService, ddb: Any, table: str, *, clock: Clock = utcnow) -> None:
        self._jobs = jobs
        self._ddb = ddb
        self._table = table
        self._clock = clock

    def run(self, event: Mapping[str, Any]) -> dict[str, Any]:
        tick = event_tick(event, self._clock)
        rules = [str(r) for r in event.get("resources") or [] if r]
        job, created = self._jobs.enqueue(
            NewJob(
                org_id=PLATFORM_ORG,
                type=FANOUT_TYPE,
                payload={"scope": "schedule", "at": iso(tick)},
                priority=FANOUT_PRIORITY,
                job_id=tick_job_id(tick),
            )
        )
        summary = {"tick": iso(tick), "job_id": job.job_id, "created": created}
        self._record(tick, rules, created)
        logger.info(
            "digest scheduler ran", extra={"tick": iso(tick), "tick_job": job.job_id, "new": created, "rules": rules}
        )
        return summary

    def _record(self, tick: datetime, rules: Sequence[str], created: bool) -> None:
        """One item per tick: how often the rule(s) fired for it and which (operators' view of the
        schedule; a duplicate delivery shows as invocations > 1)."""
        now = self._clock()
        names = {"#last": "last_invoked_at", "#exp": "expires_at", "#inv": "invocations", "#job": "job_id"}
        update = "SET #last = :now, #exp = :exp, #job = :job ADD #inv :one"
        vals: dict[str, Any] = {
            "now": iso(now),
            "exp": int((now + RECORD_TTL).timestamp()),
            "job": tick_job_id(tick),
            "one": 1,
        }
        if rules:
            update += ", #rules :rules"
            names["#rules"] = "rules"
            vals["rules"] = set(rules)
        try:
            self._ddb.update_item(
                TableName=self._table,
                Key=to_item({"pk": SCHEDULER_PK, "sk": f"TICK#{iso(tick)}"}),
                UpdateExpression=update,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values(**vals),
            )
        except Exception:  # bookkeeping only: never fail a run for it
            logger.exception("could not record the scheduler run")


def scheduler_runs(ddb: Any, table: str, since: datetime) -> list[dict[str, Any]]:
    """The scheduler's records of ticks at or after `since` (for operators and tests)."""
    response = ddb.query(
        TableName=table,
        KeyConditionExpression="pk = :pk AND sk >= :since",
        ExpressionAttributeValues=values(pk=SCHEDULER_PK, since=f"TICK#{iso(floor_to_tick(since))}"),
        ConsistentRead=True,
    )
    return [from_item(item) for item in response.get("Items", [])]


def handle_scheduled_event(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    """The `digest_scheduler` Lambda's entry point (app.py wires it to the EventBridge rule)."""
    from chalicelib.services import services

    svc = services()
    return DigestScheduler(svc.jobs, svc.ddb, svc.settings.table_name).run(event)


__all__ = [
    "EMAIL_TYPE",
    "FANOUT_TYPE",
    "PLATFORM_ORG",
    "DigestFanout",
    "DigestScheduler",
    "Progress",
    "ProgressStore",
    "digest_job_id",
    "due_kinds",
    "event_tick",
    "handle_scheduled_event",
    "scheduled_job_id",
    "scheduler_runs",
    "start_run",
    "summary_from_payload",
    "tick_job_id",
]
