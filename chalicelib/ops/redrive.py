"""Redrive: dead letters back to their source queue, each job reset first so it really runs again.

A dead job's message sits in its queue's DLQ, its record says `dead` and the ledger lists it. The
worker drops any message of a `dead` job, so a redrive resets the record (`JobStore.requeue`:
dead -> queued, attempts 0, a conditional write) *before* the message can reach the queue again,
and removes the ledger entry once the message moved. Two ways, one progress record
(pk `REDRIVE#{id}`) and at most one redrive per queue at a time (a lock item, pk
`REDRIVE#QUEUE#{queue}`):

* **whole queue** (`move_task`: the operator, no filter). The DLQ is scanned once (received and
  held, never deleted) to learn which dead jobs it really holds; each such job is reset, a ledger
  entry whose message is missing (retention ran out, a purge) gets a fresh envelope put back in
  the DLQ first; then SQS's own `StartMessageMoveTask` moves everything back at the requested
  rate (<= 500 msg/s), followed with `ListMessageMoveTasks`. When the task completed, the ledger
  is swept: entries whose job is no longer dead are removed; if the DLQ is empty while some
  entries' jobs are dead (they died again while the task ran and their new message was moved
  out and dropped), their envelope is put back in the DLQ, so ledger and DLQ agree again.
* **filtered** (`filtered`: org / type / error_code / job_id; an admin's redrive is always its
  own organization's). SQS cannot move a subset, so the matching ledger entries are the targets
  and the DLQ is scanned: a target's message is handled (record reset, a fresh envelope sent to
  the source queue, the DLQ message deleted, the ledger entry removed, in that order); every
  other message is held invisible until the scan ends and then made visible again at once
  (ChangeMessageVisibility 0): releasing each one immediately would hand the same messages back
  and the scan might never reach the rest. A target whose message is not in the DLQ after a
  complete scan is rebuilt from its record (the envelope holds ids only).

Nothing lost, nothing doubled: a message leaves the DLQ only after its copy was sent; only a job
still `dead` is reset, so a redrive started twice (or a chunk run twice) cannot send a job twice,
except a job left `queued` by a crash between reset and send, which is sent again: a duplicate
message is harmless, because `begin_attempt` is conditional, and a lost one would not be.

Where it runs: the API creates the record, takes the lock and invokes the `redrive_worker` Lambda
asynchronously. Each invocation works until its budget is spent, saves its progress and invokes
itself again. A run lease on the record (60 s, renewed by a heartbeat every 5 s) keeps two
invocations off one redrive; one that stalls past its lease loses it and stops. GET
.../redrive/{id} restarts a redrive whose heartbeat stopped and whose lease ran out (an
invocation killed by a deploy or a crash), as Lambda's own async retries also do.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from chalicelib.clock import Clock, iso, parse_iso, utcnow
from chalicelib.jobs.ledger import DeadLetterLedger, message_key
from chalicelib.jobs.model import Job
from chalicelib.jobs.queue import JobQueue
from chalicelib.jobs.store import JobStore
from chalicelib.jobs.worker import count
from chalicelib.observability import logger
from chalicelib.ops.dlq import QueueOps, QueueRef
from chalicelib.ops.records import FILTERED, MOVE_TASK, Filters, Redrive, RedriveRunning, RedriveStore, epoch

FINAL = frozenset({"completed", "failed", "cancelled"})
MAX_PER_SECOND = 500  # SQS's own cap for StartMessageMoveTask
REDRIVE_FUNCTION = "redrive_worker"
STALE_S = 60  # a running redrive whose heartbeat is older is restarted by the next GET
RUN_LEASE_S = 60  # an invocation renews its lease on every heartbeat; a dead one loses it soon
HEARTBEAT_S = 5.0
PARALLEL = 8  # record resets and ledger sweeps, this many at a time
MAX_HOLD_S = 900
MAX_INVOCATION_ERRORS = 3
SAFETY_MARGIN_S = 20.0
TASK_LISTING_GRACE_S = 60.0
MAX_BUDGET_S = 240.0
_TASK_STATUS = {"COMPLETED": "completed", "CANCELLED": "cancelled", "FAILED": "failed"}


def function_name(stage: str) -> str:
    """The redrive worker's Lambda name (Chalice names functions `{app}-{stage}-{name}`)."""
    return f"herald-{stage}-{REDRIVE_FUNCTION}"


# --- the work --------------------------------------------------------------------------------


class LeaseLost(Exception):
    """Another invocation took this redrive over (this one stalled past its lease)."""


class RateLimiter:
    """At most `per_second` calls of `wait()` return per second, across threads."""

    def __init__(self, per_second: int | None, monotonic: Callable[[], float], sleep: Callable[[float], None]) -> None:
        self._interval = 1.0 / per_second if per_second else 0.0
        self._monotonic = monotonic
        self._sleep = sleep
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self._interval:
            return
        with self._lock:
            now = self._monotonic()
            slot = max(self._next, now)
            self._next = slot + self._interval
        if slot > now:
            self._sleep(slot - now)


def _key(entry: dict[str, Any]) -> tuple[str, str]:
    return str(entry["org_id"]), str(entry["job_id"])


def _order(entry: dict[str, Any]) -> str:
    return f"{entry.get('first_seen_at', '')}|{entry['org_id']}#{entry['job_id']}"


class RedriveService:
    def __init__(
        self,
        store: RedriveStore,
        jobs: JobStore,
        queue: JobQueue,
        ledger: DeadLetterLedger,
        queues: QueueOps,
        sqs: Any,
        invoke: Callable[[str], None],
        *,
        clock: Clock = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        receive_wait_s: int = 1,
        poll_s: float = 1.0,
    ) -> None:
        self.store = store
        self._jobs = jobs
        self._queue = queue
        self._ledger = ledger
        self._queues = queues
        self._sqs = sqs
        self._invoke = invoke
        self._clock = clock
        self._monotonic = monotonic
        self._sleep = sleep
        self._receive_wait_s = receive_wait_s
        self._poll_s = poll_s

    # --- what the API calls ----------------------------------------------------------------

    def preview(self, ref: QueueRef, filters: Filters, whole_queue: bool) -> int:
        """How many dead letters a redrive would move now (the dry run)."""
        if whole_queue:
            return self._queues.depth(ref.dlq_name).total
        return len(self._targets(ref, filters, iso(self._clock()) or ""))

    def start(
        self,
        ref: QueueRef,
        filters: Filters,
        *,
        whole_queue: bool,
        org_id: str | None,
        requested_by: str,
        max_per_second: int | None,
    ) -> Redrive:
        """Create the record, take the queue's lock and hand the work to the redrive worker.
        RedriveRunning when the queue has a redrive already."""
        if self._running_task(ref) is not None:
            raise RedriveRunning(None)
        now = self._clock()
        record = Redrive(
            redrive_id="rd_" + uuid.uuid4().hex,
            queue=ref.name,
            mode=MOVE_TASK if whole_queue else FILTERED,
            filters=filters,
            org_id=org_id,
            requested_by=requested_by,
            created_at=iso(now) or "",
            max_per_second=min(max_per_second, MAX_PER_SECOND) if max_per_second else None,
            heartbeat=int(now.timestamp()),
        )
        holder = self.store.acquire(ref.name, record.redrive_id)
        if holder is not None:
            running = self.store.get(holder) if holder else None
            if running is not None and running.status == "running":
                raise RedriveRunning(running)
            if self.store.acquire(ref.name, record.redrive_id, stale=holder) is not None:
                raise RedriveRunning(None)
        try:
            record.to_move = self.preview(ref, filters, whole_queue)
            self.store.put(record)
        except Exception:
            self.store.release(ref.name, record.redrive_id)
            raise
        if record.to_move == 0 and not whole_queue:
            self.store.finish(record, "completed")
            return self.store.get(record.redrive_id) or record
        try:
            self._invoke(record.redrive_id)
        except Exception as err:
            logger.exception("could not start the redrive worker")
            self.store.finish(record, "failed", {"code": "worker_unavailable", "message": f"{type(err).__name__}"})
            raise
        logger.info("redrive started", extra={"redrive_id": record.redrive_id, "queue": ref.name, "mode": record.mode})
        return record

    def get(self, redrive_id: str) -> Redrive | None:
        """The record; a running redrive whose worker stopped beating is restarted on the way."""
        record = self.store.get(redrive_id)
        if record is None:
            return None
        stalled = record.status == "running" and record.heartbeat < epoch(self._clock) - STALE_S
        if stalled and self.store.revive(record):
            logger.warning("redrive stalled: restarting its worker", extra={"redrive_id": redrive_id})
            try:
                self._invoke(redrive_id)
            except Exception:
                logger.exception("could not restart the redrive worker")
        return record

    # --- what the redrive worker runs --------------------------------------------------------

    def run(self, redrive_id: str, budget_s: float) -> bool:
        """Work on a redrive for at most `budget_s`; then invoke the next run if it is not
        done. Returns True when the redrive is finished (or not this invocation's to run)."""
        deadline = self._monotonic() + max(budget_s, 1.0)
        record = self.store.get(redrive_id)
        if record is None or record.status != "running":
            return True
        self._owner = uuid.uuid4().hex
        self._last_beat = self._monotonic()
        if not self.store.claim(redrive_id, self._owner, RUN_LEASE_S):
            logger.info("redrive already being worked on", extra={"redrive_id": redrive_id})
            return True
        ref = self._queues.resolve(record.queue)
        done = False
        try:
            if ref is None:
                self.store.finish(record, "failed", {"code": "unknown_queue", "message": record.queue})
                return True
            self.store.renew(record.queue, redrive_id)
            done = (
                self._run_move(ref, record, deadline)
                if record.mode == MOVE_TASK
                else self._run_filtered(ref, record, deadline)
            )
        except LeaseLost:
            logger.warning("another invocation took this redrive over: stopping", extra={"redrive_id": redrive_id})
            return True
        except Exception as err:
            logger.exception("redrive invocation failed", extra={"redrive_id": redrive_id})
            if self.store.failed_invocation(redrive_id) >= MAX_INVOCATION_ERRORS:
                message = f"{type(err).__name__}: {err}"[:500]
                self.store.finish(record, "failed", {"code": "redrive_error", "message": message})
                return True
        finally:
            if not done:
                self.store.unclaim(redrive_id, self._owner)
        if not done:
            self._invoke(redrive_id)
        return done

    def _pulse(self, redrive_id: str, force: bool = False) -> None:
        """Renew this invocation's lease (and the heartbeat GET looks at) every few seconds."""
        if force or self._monotonic() - self._last_beat >= HEARTBEAT_S:
            if not self.store.beat(redrive_id, self._owner, RUN_LEASE_S):
                raise LeaseLost(redrive_id)
            self._last_beat = self._monotonic()

    def _each(
        self,
        record: Redrive,
        entries: list[dict[str, Any]],
        deadline: float,
        action: Callable[[dict[str, Any]], None],
        done: Callable[[dict[str, Any]], None],
    ) -> bool:
        """`action` on every entry, PARALLEL at a time, in order by chunks; `done(last)` after each
        chunk. False when the deadline came first."""
        with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
            for start in range(0, len(entries), PARALLEL * 4):
                if self._monotonic() >= deadline:
                    return False
                chunk = entries[start : start + PARALLEL * 4]
                list(pool.map(action, chunk))
                done(chunk[-1])
                self._pulse(record.redrive_id)
        return True

    # --- whole queue: reset, then SQS's move task -----------------------------------------

    def _run_move(self, ref: QueueRef, record: Redrive, deadline: float) -> bool:
        if record.phase in ("reset", "reset_all"):
            if not self._reset(ref, record, deadline):
                return False
            record.phase = "start"
            self.store.set(record.redrive_id, phase="start")
        if record.phase == "start":
            if self._queues.depth(ref.dlq_name).total == 0:
                record.phase, record.outcome = "sweep", "completed"
                self.store.set(record.redrive_id, phase="sweep", outcome="completed", to_move=0)
            else:
                self._start_task(ref, record)
        if record.phase == "moving" and not self._follow_task(ref, record, deadline):
            return False
        if record.phase == "sweep":
            if record.outcome == "completed" and not self._sweep(ref, record, deadline):
                return False
            self.store.finish(record, record.outcome or "completed", record.error)
            logger.info("redrive finished", extra={"redrive_id": record.redrive_id, "status": record.outcome})
        return True

    def _reset(self, ref: QueueRef, record: Redrive, deadline: float) -> bool:
        """Reset every dead job whose message the DLQ holds; put a missing message back first.

        Resumable: entries are taken oldest first and `reset_mark` remembers the last one done.
        Phase `reset` scans the DLQ first to find missing messages; a DLQ too large to scan in
        one invocation, or one with messages in flight, falls back to resetting every entry's job
        and restoring none.
        """
        present: set[tuple[str, str]] | None = None
        if record.phase == "reset":
            found: set[tuple[str, str]] = set()

            def note(messages: list[dict[str, Any]]) -> list[bool]:
                found.update(key for key in map(message_key, messages) if key is not None)
                return [False] * len(messages)  # hold them: this scan only looks

            if self._scan(ref, record.redrive_id, deadline, note, lambda: False) == "deadline":
                logger.warning(
                    "the DLQ is too large to scan in one run: resetting every ledger entry", extra={"queue": ref.name}
                )
                record.phase = "reset_all"
                self.store.set(record.redrive_id, phase="reset_all")
                return False
            depth = self._queues.depth(ref.dlq_name)
            # Messages someone else holds (a run that died mid-scan) were not seen: without a
            # complete view, put nothing back (that could double a message), reset every entry.
            present = found if depth.in_flight == 0 and depth.delayed == 0 else None
        mark = record.reset_mark or ""
        entries = [e for e in sorted(self._ledger.list(ref.name), key=_order) if _order(e) > mark]

        def reset(entry: dict[str, Any]) -> None:
            org_id, job_id = _key(entry)
            if present is None or (org_id, job_id) in present:
                self._jobs.requeue(org_id, job_id)
                return
            job = self._jobs.get(org_id, job_id)
            if job is not None and job.status in ("dead", "queued"):
                self._restore(ref, job, entry)  # its message is gone: put a fresh envelope back
                self._jobs.requeue(org_id, job_id)
            else:
                self._ledger.remove(ref.name, org_id, job_id, seen_at=entry.get("last_seen_at"))

        def advance(last: dict[str, Any]) -> None:
            record.reset_mark = _order(last)

        if not self._each(record, entries, deadline, reset, advance):
            self.store.set(record.redrive_id, reset_mark=record.reset_mark)
            return False
        return True

    def _start_task(self, ref: QueueRef, record: Redrive) -> None:
        dlq_arn = self._queues.arn(ref.dlq_name)
        created_ms = int(parse_iso(record.created_at).timestamp() * 1000) - 5_000
        # A task newer than this redrive is this redrive's (it holds the queue's lock): started by
        # an invocation that died before it could record it. Adopt it, running or finished.
        ours = next((t for t in self._tasks(ref) if int(t.get("StartedTimestamp", 0)) >= created_ms), None)
        started_ms = int(ours["StartedTimestamp"]) if ours else int(self._clock().timestamp() * 1000)
        if ours is not None:
            handle = str(ours.get("TaskHandle", ""))
        elif self._running_task(ref) is not None:
            raise RuntimeError("an SQS move task started outside Herald is running on this DLQ")
        else:
            request: dict[str, Any] = {"SourceArn": dlq_arn, "DestinationArn": self._queues.arn(ref.name)}
            if record.max_per_second:
                request["MaxNumberOfMessagesPerSecond"] = record.max_per_second
            handle = str(self._sqs.start_message_move_task(**request)["TaskHandle"])
        record.phase, record.task_handle, record.move_started_ms = "moving", handle, started_ms
        self.store.set(record.redrive_id, phase="moving", task_handle=handle, move_started_ms=started_ms)

    def _tasks(self, ref: QueueRef) -> list[dict[str, Any]]:
        response = self._sqs.list_message_move_tasks(SourceArn=self._queues.arn(ref.dlq_name), MaxResults=10)
        tasks = list(response.get("Results", []))
        tasks.sort(key=lambda task: int(task.get("StartedTimestamp", 0)), reverse=True)
        return tasks

    def _running_task(self, ref: QueueRef) -> dict[str, Any] | None:
        return next((task for task in self._tasks(ref) if task.get("Status") in ("RUNNING", "CANCELLING")), None)

    def _our_task(self, ref: QueueRef, record: Redrive) -> dict[str, Any] | None:
        tasks = self._tasks(ref)
        for task in tasks:
            if record.task_handle and task.get("TaskHandle") == record.task_handle:
                return task
        # SQS shows the handle of running tasks only; a finished one is the newest since ours began
        # (less a little clock skew; the queue's lock kept other redrives from starting one since).
        since = (record.move_started_ms or 0) - 5_000
        return next((task for task in tasks if int(task.get("StartedTimestamp", 0)) >= since), None)

    def _follow_task(self, ref: QueueRef, record: Redrive, deadline: float) -> bool:
        while True:
            task = self._our_task(ref, record)
            if task is None:
                age_s = self._clock().timestamp() - (record.move_started_ms or 0) / 1000
                if age_s < TASK_LISTING_GRACE_S and self._monotonic() + self._poll_s < deadline:
                    self._sleep(self._poll_s)  # just started: not listed yet
                    continue
                record.outcome, record.error = "failed", {"code": "move_task_lost", "message": "SQS lists no such task"}
                break
            moved = int(task.get("ApproximateNumberOfMessagesMoved", 0))
            to_move = int(task.get("ApproximateNumberOfMessagesToMove", record.to_move))
            status = str(task.get("Status", ""))
            if status in _TASK_STATUS:
                record.outcome = _TASK_STATUS[status]
                if status == "FAILED":
                    record.error = {"code": "move_task_failed", "message": str(task.get("FailureReason", ""))[:500]}
                record.moved, record.to_move = moved, max(to_move, moved)
                break
            self.store.set(record.redrive_id, moved=moved, to_move=max(to_move, moved))
            self._pulse(record.redrive_id)
            if self._monotonic() + self._poll_s >= deadline:
                return False
            self._sleep(self._poll_s)
        record.phase = "sweep"
        fields: dict[str, Any] = {
            "phase": "sweep",
            "outcome": record.outcome,
            "moved": record.moved,
            "to_move": record.to_move,
        }
        if record.error:
            fields["error"] = record.error
        self.store.set(record.redrive_id, **fields)
        return True

    def _sweep(self, ref: QueueRef, record: Redrive, deadline: float) -> bool:
        """After the move: drop entries of jobs that are no longer dead; if the DLQ is empty,
        put back the envelopes of jobs that are dead but whose message the task moved out."""
        dead: list[tuple[dict[str, Any], Job]] = []

        def sweep(entry: dict[str, Any]) -> None:
            job = self._jobs.get(*_key(entry))
            if job is not None and job.status == "dead":
                dead.append((entry, job))
            else:
                self._ledger.remove(ref.name, *_key(entry), seen_at=entry.get("last_seen_at"))

        if not self._each(record, self._ledger.list(ref.name), deadline, sweep, lambda last: None):
            return False
        if dead and self._queues.depth(ref.dlq_name).total == 0:
            for entry, job in dead:
                self._restore(ref, job, entry)
            logger.warning("dead letters put back into the DLQ after the move", extra={"count": len(dead)})
        return True

    def _restore(self, ref: QueueRef, job: Job, entry: dict[str, Any]) -> None:
        """Send the job's burial message again (its message in the DLQ was lost): SQS's redrive
        policy takes it to the DLQ (a job reset meanwhile just runs: chalicelib/jobs/burial.py)."""
        error = job.error or entry.get("last_error") or {}
        self._ledger.bury(self._queue, ref.priority, job, error)

    # --- filtered: receive, pick, send, delete --------------------------------------------

    def _targets(self, ref: QueueRef, filters: Filters, before: str) -> dict[tuple[str, str], dict[str, Any]]:
        """Matching ledger entries recorded by `before` (jobs dying later are not part of it)."""
        return {
            _key(entry): entry
            for entry in self._ledger.list(ref.name, filters.org_id)
            if filters.matches(entry) and str(entry.get("first_seen_at", "")) <= before
        }

    def _run_filtered(self, ref: QueueRef, record: Redrive, deadline: float) -> bool:
        targets = self._targets(ref, record.filters, record.created_at)
        limiter = RateLimiter(record.max_per_second, self._monotonic, self._sleep)
        url = self._queues.url(ref.dlq_name)
        tally = {"moved": 0, "skipped": 0}
        handled: set[tuple[str, str]] = set()
        last_flush = self._monotonic()

        def flush(force: bool = False) -> None:
            nonlocal last_flush
            if force or self._monotonic() - last_flush >= HEARTBEAT_S / 5:
                if tally["moved"] or tally["skipped"] or force:
                    self.store.progress(record.redrive_id, tally["moved"], tally["skipped"])
                tally["moved"] = tally["skipped"] = 0
                last_flush = self._monotonic()

        def visit(messages: list[dict[str, Any]]) -> list[bool]:
            """Pick this batch's targets (in order), then redrive them PARALLEL at a time."""
            consumed = [False] * len(messages)
            picked: list[tuple[int, dict[str, Any], str]] = []
            for i, message in enumerate(messages):
                key = message_key(message)
                if key is not None and key in handled:  # a second copy of a job just redriven
                    self._sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
                    consumed[i] = True
                elif key is not None and key in targets:
                    handled.add(key)
                    picked.append((i, targets.pop(key), str(message["ReceiptHandle"])))

            def one(item: tuple[int, dict[str, Any], str]) -> str:
                limiter.wait()
                return self._redrive_one(ref, item[1], url, item[2])

            for (i, _, _), outcome in zip(picked, pool.map(one, picked), strict=True):
                tally[outcome] += 1
                consumed[i] = True
            flush()
            return consumed

        try:
            with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
                scanned = (
                    self._scan(ref, record.redrive_id, deadline, visit, lambda: not targets) if targets else "done"
                )
        finally:
            flush(force=True)
        if scanned == "deadline":
            return False
        not_found = 0
        if targets:
            depth = self._queues.depth(ref.dlq_name)
            if depth.in_flight == 0 and depth.delayed == 0:
                # A complete scan did not meet them: their messages are gone. Rebuild from the record.
                for entry in targets.values():
                    tally[self._redrive_one(ref, entry, url, None)] += 1
                flush(force=True)
            else:
                not_found = len(targets)
        if not_found:
            self.store.set(record.redrive_id, not_found=not_found)
        self.store.finish(record, "completed")
        logger.info("redrive finished", extra={"redrive_id": record.redrive_id, "not_found": not_found})
        return True

    def _redrive_one(self, ref: QueueRef, entry: dict[str, Any], url: str, receipt: str | None) -> str:
        """Reset, send, delete from the DLQ, forget: 'moved', or 'skipped' for a stale copy."""
        org_id, job_id = _key(entry)
        job = self._jobs.requeue(org_id, job_id)
        if job is None:
            # Not dead any more. Still `queued`: reset by a run that stopped before sending, so
            # this copy may be its only message: send it. Anything else ran since: stale copy.
            current = self._jobs.get(org_id, job_id)
            job = current if current is not None and current.status == "queued" else None
        if job is not None:
            self._queue.send(job)
            count("JobsRedriven", job.type)
        if receipt is not None:
            self._sqs.delete_message(QueueUrl=url, ReceiptHandle=receipt)
        self._ledger.remove(ref.name, org_id, job_id, seen_at=entry.get("last_seen_at"))
        return "moved" if job is not None else "skipped"

    # --- the DLQ scan ----------------------------------------------------------------------

    def _scan(
        self,
        ref: QueueRef,
        redrive_id: str,
        deadline: float,
        visit: Callable[[list[dict[str, Any]]], list[bool]],
        done: Callable[[], bool],
    ) -> str:
        """Receive the DLQ's messages once each: `visit(batch)` says which it consumed (deleted);
        the others are held invisible until the scan ends, then made visible again at once.
        'complete' (an empty receive: every message seen), 'done' (`done()`), or 'deadline'."""
        url = self._queues.url(ref.dlq_name)
        held: list[str] = []
        try:
            while not done():
                remaining = deadline - self._monotonic()
                if remaining <= 0:
                    return "deadline"
                self._pulse(redrive_id)
                messages = self._sqs.receive_message(
                    QueueUrl=url,
                    MaxNumberOfMessages=10,
                    VisibilityTimeout=int(min(MAX_HOLD_S, remaining + SAFETY_MARGIN_S)),
                    WaitTimeSeconds=self._receive_wait_s,
                    MessageAttributeNames=["All"],
                ).get("Messages", [])
                if not messages:
                    return "complete"
                unvisited = [str(m["ReceiptHandle"]) for m in messages]
                try:
                    consumed = visit(messages)
                    unvisited = [r for r, gone in zip(unvisited, consumed, strict=True) if not gone]
                finally:  # also when `visit` raised: nothing received stays hidden
                    held.extend(unvisited)
            return "done"
        finally:
            self._release(url, held)

    def _release(self, url: str, receipts: list[str]) -> None:
        for batch in _chunks(receipts, 10):
            response = self._sqs.change_message_visibility_batch(
                QueueUrl=url,
                Entries=[{"Id": str(i), "ReceiptHandle": r, "VisibilityTimeout": 0} for i, r in enumerate(batch)],
            )
            if response.get("Failed"):
                logger.warning("some held dead letters were not released", extra={"failed": response["Failed"]})


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def lambda_invoker(client: Callable[[], Any], name: str) -> Callable[[str], None]:
    """Invoke the redrive worker asynchronously (InvocationType=Event) for one redrive."""

    def invoke(redrive_id: str) -> None:
        client().invoke(
            FunctionName=name, InvocationType="Event", Payload=json.dumps({"redrive_id": redrive_id}).encode()
        )

    return invoke


def handle_invocation(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The `redrive_worker` Lambda: one budgeted run of the redrive named in the event."""
    from chalicelib.services import services

    redrive_id = str((event or {}).get("redrive_id") or "")
    if not redrive_id:
        logger.error("redrive worker invoked without a redrive_id")
        return {"done": True}
    remaining_ms = context.get_remaining_time_in_millis() if context is not None else 60_000
    budget = min(MAX_BUDGET_S, remaining_ms / 1000 - SAFETY_MARGIN_S)
    logger.append_keys(redrive_id=redrive_id)
    try:
        return {"done": services().redrives.run(redrive_id, budget)}
    finally:
        logger.remove_keys(["redrive_id"])
