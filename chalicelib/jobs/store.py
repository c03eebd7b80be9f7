"""Job records in DynamoDB, always addressed through their organization.

Every method takes the org id and builds the key from it, so a forgotten check in a route
cannot reach another organization's job: another org's id simply is not there.
Status transitions are conditional writes: two workers cannot both make a job `active`, and a
worker cannot complete a job that was cancelled or taken over meanwhile.
"""

from __future__ import annotations

import builtins
import json
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from chalicelib.clock import Clock, iso, parse_iso, utcnow
from chalicelib.ddb import (
    cancellation_reasons,
    decode_cursor,
    encode_cursor,
    from_item,
    is_condition_failure,
    to_item,
    values,
)
from chalicelib.jobs.burial import new_burial
from chalicelib.jobs.model import PENDING, Job

JOB_SK = "JOB"
_BATCH_GET = 100  # BatchGetItem's limit of keys per call
_UNPROCESSED_ATTEMPTS = 8
_NAMES = {"#s": "status", "#e": "error", "#r": "result", "#t": "type"}


def job_pk(org_id: str, job_id: str) -> str:
    return f"JOB#{org_id}#{job_id}"


def org_jobs_pk(org_id: str) -> str:
    return f"ORG#{org_id}#JOBS"


class NotFound(Exception):
    pass


class Conflict(Exception):
    def __init__(self, job: Job) -> None:
        super().__init__(f"job {job.job_id} is {job.status}")
        self.job = job


class BadCursor(ValueError):
    pass


# Job types the email digests count: their finished records must outlive the longest digest
# period (a monthly digest, sent after its month ends, reads records up to 31 days old).
DIGEST_COUNTED_TYPES = frozenset({"sms", "escalation"})


@dataclass(frozen=True)
class Retention:
    completed_days: int = 7
    dead_days: int = 30
    alert_days: int = 35  # at least, for DIGEST_COUNTED_TYPES

    def days(self, job_type: str, status: str) -> int:
        days = self.dead_days if status == "dead" else self.completed_days
        return max(days, self.alert_days) if job_type in DIGEST_COUNTED_TYPES else days


def _job_to_item(job: Job) -> dict[str, Any]:
    created = iso(job.created_at)
    return to_item(
        {
            "pk": job_pk(job.org_id, job.job_id),
            "sk": JOB_SK,
            "gsi1pk": org_jobs_pk(job.org_id),
            "gsi1sk": f"{created}#{job.job_id}",
            "job_id": job.job_id,
            "org_id": job.org_id,
            "type": job.type,
            "status": job.status,
            "priority": job.priority,
            "attempts": job.attempts,
            "max_attempts": job.max_attempts,
            "backoff_seconds": job.backoff_seconds,
            "created_at": created,
            "run_at": iso(job.run_at),
            "payload": json.dumps(job.payload, separators=(",", ":")),
            "meta": json.dumps(job.meta, separators=(",", ":")),
            "idempotency_key": job.idempotency_key,
            "correlation_id": job.correlation_id,
        }
    )


def _job_from_item(item: dict[str, Any]) -> Job:
    data = from_item(item)

    def when(key: str) -> datetime | None:
        return parse_iso(data[key]) if data.get(key) else None

    def loads(key: str) -> Any:
        return json.loads(data[key]) if data.get(key) else None

    return Job(
        job_id=data["job_id"],
        org_id=data["org_id"],
        type=data["type"],
        status=data["status"],
        priority=data["priority"],
        created_at=parse_iso(data["created_at"]),
        run_at=parse_iso(data["run_at"]),
        payload=loads("payload") or {},
        meta=loads("meta") or {},
        attempts=int(data.get("attempts", 0)),
        max_attempts=int(data.get("max_attempts", 5)),
        backoff_seconds=int(data.get("backoff_seconds", 2)),
        started_at=when("started_at"),
        finished_at=when("finished_at"),
        result=loads("result"),
        error=loads("error"),
        idempotency_key=data.get("idempotency_key"),
        correlation_id=data.get("correlation_id", ""),
        burial=data.get("burial"),
        burial_receives=int(data.get("burial_receives", 0)),
    )


class JobStore:
    def __init__(self, ddb: Any, table: str, clock: Clock = utcnow, retention: Retention | None = None) -> None:
        self._ddb = ddb
        self._table = table
        self._clock = clock
        self._retention = retention or Retention()

    # --- create and read -------------------------------------------------------------------

    def create(self, job: Job) -> tuple[Job, bool]:
        """Write a new job; with an idempotency key or a fixed id, return (existing, False) instead.

        The job and its idempotency key are written in one transaction, each only if absent.
        """
        item = _job_to_item(job)
        writes: list[dict[str, Any]] = [
            {"Put": {"TableName": self._table, "Item": item, "ConditionExpression": "attribute_not_exists(pk)"}}
        ]
        if job.idempotency_key is not None:
            writes.append(
                {
                    "Put": {
                        "TableName": self._table,
                        "Item": to_item(
                            {
                                "pk": f"IDEM#{job.org_id}#{job.idempotency_key}",
                                "sk": "IDEM",
                                "job_id": job.job_id,
                                "created_at": iso(job.created_at),
                            }
                        ),
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                }
            )
        try:
            if len(writes) == 1:
                self._ddb.put_item(**writes[0]["Put"])
            else:
                self._ddb.transact_write_items(TransactItems=writes)
        except ClientError as err:
            if not is_condition_failure(err):
                raise
            existing = self._existing_for(job, cancellation_reasons(err))
            if existing is None:
                raise
            return existing, False
        return job, True

    def _existing_for(self, job: Job, reasons: list[str]) -> Job | None:
        if job.idempotency_key is not None and (not reasons or reasons[-1] == "ConditionalCheckFailed"):
            got = self._ddb.get_item(
                TableName=self._table,
                Key=to_item({"pk": f"IDEM#{job.org_id}#{job.idempotency_key}", "sk": "IDEM"}),
                ConsistentRead=True,
            ).get("Item")
            if got:
                return self.get(job.org_id, from_item(got)["job_id"])
        return self.get(job.org_id, job.job_id)

    def delete(self, job: Job) -> None:
        """Undo `create` (the message could not be sent): the request failed, nothing remains."""
        writes = [
            {"Delete": {"TableName": self._table, "Key": to_item({"pk": job_pk(job.org_id, job.job_id), "sk": JOB_SK})}}
        ]
        if job.idempotency_key is not None:
            writes.append(
                {
                    "Delete": {
                        "TableName": self._table,
                        "Key": to_item({"pk": f"IDEM#{job.org_id}#{job.idempotency_key}", "sk": "IDEM"}),
                    }
                }
            )
        self._ddb.transact_write_items(TransactItems=writes)

    def get(self, org_id: str, job_id: str) -> Job | None:
        """The job with its delivery log (one query over the job's own partition)."""
        response = self._ddb.query(
            TableName=self._table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues=values(pk=job_pk(org_id, job_id)),
            ConsistentRead=True,
        )
        job: Job | None = None
        deliveries: list[dict[str, Any]] = []
        for item in response.get("Items", []):
            sk = item["sk"]["S"]
            if sk == JOB_SK:
                job = _job_from_item(item)
            elif sk.startswith("DELIVERY#"):
                record = from_item(item)
                deliveries.append(json.loads(record["record"]))
        if job is not None:
            job.deliveries = deliveries
        return job

    def list(
        self,
        org_id: str,
        *,
        status: str | None = None,
        job_type: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> tuple[list[Job], str | None]:
        """Newest first. Filters apply server-side; pages are filled up to `limit`."""
        query: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": "gsi1",
            "KeyConditionExpression": "gsi1pk = :g",
            "ScanIndexForward": False,
        }
        names: dict[str, str] = {}
        filters: list[str] = []
        vals: dict[str, Any] = {"g": org_jobs_pk(org_id)}
        if status:
            filters.append("#s = :s")
            names["#s"] = "status"
            vals["s"] = status
        if job_type:
            filters.append("#t = :t")
            names["#t"] = "type"
            vals["t"] = job_type
        if filters:
            query["FilterExpression"] = " AND ".join(filters)
            query["ExpressionAttributeNames"] = names
        query["ExpressionAttributeValues"] = values(**vals)
        start: dict[str, Any] | None = None
        if cursor:
            try:
                start = decode_cursor(cursor)
            except ValueError:
                raise BadCursor(cursor) from None
            if start.get("gsi1pk", {}).get("S") != org_jobs_pk(org_id) or set(start) != {
                "pk",
                "sk",
                "gsi1pk",
                "gsi1sk",
            }:
                raise BadCursor(cursor)
        jobs: list[Job] = []
        while True:
            page = dict(query, Limit=max(limit - len(jobs), 1) if not filters else 100)
            if start:
                page["ExclusiveStartKey"] = start
            response = self._ddb.query(**page)
            for item in response.get("Items", []):
                jobs.append(_job_from_item(item))
                if len(jobs) == limit:
                    last = item
                    return jobs, encode_cursor({k: last[k] for k in ("pk", "sk", "gsi1pk", "gsi1sk")})
            start = response.get("LastEvaluatedKey")
            if not start:
                return jobs, None

    # --- many at once (fan-outs) -------------------------------------------------------------

    def statuses(self, org_id: str, job_ids: Sequence[str]) -> dict[str, str]:
        """`{job_id: status}` of those of `job_ids` that exist (BatchGetItem, 100 keys a call)."""
        found: dict[str, str] = {}
        unique = list(dict.fromkeys(job_ids))
        for start in range(0, len(unique), _BATCH_GET):
            chunk = unique[start : start + _BATCH_GET]
            keys = [to_item({"pk": job_pk(org_id, job_id), "sk": JOB_SK}) for job_id in chunk]
            request: dict[str, Any] = {
                self._table: {
                    "Keys": keys,
                    "ConsistentRead": True,
                    "ProjectionExpression": "job_id, #s",
                    "ExpressionAttributeNames": {"#s": "status"},
                }
            }
            for attempt in range(_UNPROCESSED_ATTEMPTS):
                response = self._ddb.batch_get_item(RequestItems=request)
                for item in response.get("Responses", {}).get(self._table, []):
                    data = from_item(item)
                    found[str(data["job_id"])] = str(data["status"])
                request = response.get("UnprocessedKeys") or {}
                if not request:
                    break
                time.sleep(min(0.05 * 2**attempt, 1.0))  # throttled: back off, then ask for the rest
            else:
                raise RuntimeError("DynamoDB left keys unprocessed after several BatchGetItem calls")
        return found

    def create_many(self, jobs: Sequence[Job], max_workers: int = 16) -> builtins.list[Job]:
        """Write each job only if its id is new; the ones written, in order.

        One conditional PutItem per job, `max_workers` at a time: BatchWriteItem cannot be
        conditional (it would overwrite a finished job, which would then run again), and a
        transaction fails whole on one existing id. Fixed ids only: no idempotency keys here.
        """
        if any(job.idempotency_key is not None for job in jobs):
            raise ValueError("create_many takes jobs with fixed ids, not idempotency keys")

        def put(job: Job) -> bool:
            try:
                self._ddb.put_item(
                    TableName=self._table, Item=_job_to_item(job), ConditionExpression="attribute_not_exists(pk)"
                )
            except ClientError as err:
                if is_condition_failure(err):
                    return False
                raise
            return True

        if max_workers <= 1 or len(jobs) <= 1:
            written = [put(job) for job in jobs]
        else:
            with ThreadPoolExecutor(max_workers=min(max_workers, len(jobs))) as pool:
                written = list(pool.map(put, jobs))
        return [job for job, ok in zip(jobs, written, strict=True) if ok]

    def iter_created(self, org_id: str, start: datetime, end: datetime) -> Iterator[dict[str, Any]]:
        """The org's job records created in `[start, end)`, newest first, as plain dicts with
        `payload`, `meta` and `result` decoded (what `digests.summarize` reads). The range is the
        gsi1 sort key's, so DynamoDB stops at `start`: nothing older is read."""
        query: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": "gsi1",
            "KeyConditionExpression": "gsi1pk = :g AND gsi1sk BETWEEN :start AND :end",
            "ExpressionAttributeValues": values(g=org_jobs_pk(org_id), start=iso(start), end=iso(end)),
            "ScanIndexForward": False,
        }
        while True:
            response = self._ddb.query(**query)
            for item in response.get("Items", []):
                data = from_item(item)
                for key in ("payload", "meta", "result", "error"):
                    if isinstance(data.get(key), str):
                        data[key] = json.loads(data[key])
                yield data
            if "LastEvaluatedKey" not in response:
                return
            query["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    # --- transitions -----------------------------------------------------------------------

    def _update(self, org_id: str, job_id: str, update: str, condition: str, **vals: Any) -> Job | None:
        try:
            response = self._ddb.update_item(
                TableName=self._table,
                Key=to_item({"pk": job_pk(org_id, job_id), "sk": JOB_SK}),
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeNames={k: v for k, v in _NAMES.items() if k in update or k in condition},
                ExpressionAttributeValues=values(**vals),
                ReturnValues="ALL_NEW",
            )
        except ClientError as err:
            if is_condition_failure(err):
                return None
            raise
        return _job_from_item(response["Attributes"])

    def begin_attempt(
        self,
        org_id: str,
        job_id: str,
        lease_s: int,
        *,
        job_type: str | None = None,
        due_by: datetime | None = None,
    ) -> Job | None:
        """Make the job `active` for one more attempt, or None when it must not run now.

        A job runs from scheduled/queued/failed, or from `active` whose lease ran out (the worker
        that held it crashed or timed out). Never from a final status: a cancelled job never runs.
        With `job_type` and `due_by` (the worker's first try, before it has read the job), also
        only a job of that type whose run_at is by then (or a failed one: its backoff is the
        message's visibility), so that one conditional write both checks and starts a job; None
        then means "read the job and see why".
        """
        now = self._clock()
        condition = (
            "attribute_exists(pk) AND (#s IN (:scheduled, :queued, :failed) OR (#s = :active AND lease_until < :epoch))"
        )
        checks: dict[str, Any] = {}
        if job_type is not None:
            condition += " AND #t = :type"
            checks["type"] = job_type
        if due_by is not None:
            condition += " AND (#s = :failed OR run_at <= :due)"  # iso() strings sort as time does
            checks["due"] = iso(due_by)
        return self._update(
            org_id,
            job_id,
            "SET #s = :active, attempts = attempts + :one, started_at = :now, lease_until = :lease, updated_at = :now",
            condition,
            active="active",
            one=1,
            now=iso(now),
            lease=int(now.timestamp()) + lease_s,
            epoch=int(now.timestamp()),
            scheduled="scheduled",
            queued="queued",
            failed="failed",
            **checks,
        )

    def _finish(self, job: Job, status: str, days: int, result: Any, error: Any, **extra: Any) -> Job | None:
        now = self._clock()
        sets = "".join(f", {name} = :{name}" for name in extra)
        return self._update(
            job.org_id,
            job.job_id,
            "SET #s = :status, #r = :result, #e = :error, finished_at = :now, updated_at = :now, "
            f"expires_at = :exp{sets} REMOVE lease_until",
            "#s = :active AND attempts = :attempts",
            status=status,
            result=json.dumps(result),
            error=json.dumps(error),
            now=iso(now),
            exp=int((now + timedelta(days=days)).timestamp()),
            active="active",
            attempts=job.attempts,
            **extra,
        )

    def complete(self, job: Job, result: dict[str, Any] | None) -> Job | None:
        return self._finish(job, "completed", self._retention.days(job.type, "completed"), result, None)

    def kill(self, job: Job, error: dict[str, Any], burial: str | None = None) -> Job | None:
        """The running attempt was the last: `dead`, with the id of its burial (a new one unless
        given; the message that takes it to the DLQ carries the same id)."""
        days = self._retention.days(job.type, "dead")
        return self._finish(job, "dead", days, None, error, burial=burial or new_burial())

    def note_burial_receive(self, job: Job, receive_count: int) -> None:
        """Remember the highest receive count of the job's burial message seen on its way to the
        DLQ (a lower one later means the message came back out of the DLQ)."""
        self._update(
            job.org_id,
            job.job_id,
            "SET burial_receives = :count",
            "#s = :dead AND burial = :burial AND (attribute_not_exists(burial_receives) OR burial_receives < :count)",
            count=receive_count,
            dead="dead",
            burial=job.burial,
        )

    def mark_failed(self, job: Job, error: dict[str, Any], retry_at: datetime) -> Job | None:
        """An attempt failed and another will follow at `retry_at`."""
        return self._update(
            job.org_id,
            job.job_id,
            "SET #s = :failed, #e = :error, run_at = :retry, updated_at = :now REMOVE lease_until",
            "#s = :active AND attempts = :attempts",
            failed="failed",
            error=json.dumps(error),
            retry=iso(retry_at),
            now=iso(self._clock()),
            active="active",
            attempts=job.attempts,
        )

    def reschedule(self, job: Job, run_at: datetime, decision: dict[str, Any] | None = None) -> Job | None:
        """The running attempt was deferred (not failed): back to `scheduled` at `run_at`.

        The attempt is given back (attempts - 1), so deferrals never use up retries. A
        `decision` is recorded as `result.deferred` (what a client sees while the job waits) and
        `meta.deferral` (what the handler sees when it runs again); without one, both are kept.
        """
        update = "SET #s = :scheduled, run_at = :run_at, attempts = attempts - :one, updated_at = :now"
        vals: dict[str, Any] = {}
        if decision is not None:
            update += ", meta = :meta, #r = :result"
            vals["meta"] = json.dumps({**job.meta, "deferral": decision}, separators=(",", ":"))
            vals["result"] = json.dumps({"deferred": decision})
        return self._update(
            job.org_id,
            job.job_id,
            update + " REMOVE lease_until",
            "#s = :active AND attempts = :attempts",
            scheduled="scheduled",
            run_at=iso(run_at),
            one=1,
            now=iso(self._clock()),
            active="active",
            attempts=job.attempts,
            **vals,
        )

    def cancel(self, org_id: str, job_id: str) -> Job:
        """Cancel a scheduled or queued job. NotFound, or Conflict when it is active or final."""
        now = self._clock()
        job = self._update(
            org_id,
            job_id,
            "SET #s = :cancelled, finished_at = :now, updated_at = :now, expires_at = :exp",
            "#s IN (:scheduled, :queued)",
            cancelled="cancelled",
            now=iso(now),
            exp=int((now + timedelta(days=self._retention.completed_days)).timestamp()),
            scheduled="scheduled",
            queued="queued",
        )
        if job is not None:
            return job
        existing = self.get(org_id, job_id)
        if existing is None:
            raise NotFound(job_id)
        raise Conflict(existing)

    def cancel_if_pending(self, org_id: str, job_id: str) -> bool:
        try:
            self.cancel(org_id, job_id)
        except (NotFound, Conflict):
            return False
        return True

    def requeue(self, org_id: str, job_id: str, burial: str | None = None) -> Job | None:
        """Reset a dead job for a redrive: it runs again from attempt 1. With `burial`, only the
        dead job of that burial (its burial message came back out of the DLQ). The burial is
        forgotten either way, so no other copy of its message can revive the job again."""
        now = self._clock()
        condition = "#s = :dead"
        checks: dict[str, Any] = {}
        if burial is not None:
            condition += " AND burial = :burial"
            checks["burial"] = burial
        return self._update(
            org_id,
            job_id,
            "SET #s = :queued, attempts = :zero, run_at = :now, updated_at = :now "
            "REMOVE finished_at, expires_at, lease_until, burial, burial_receives",
            condition,
            queued="queued",
            zero=0,
            now=iso(now),
            dead="dead",
            **checks,
        )

    def add_delivery(self, job: Job, attempt_key: str, record: dict[str, Any]) -> None:
        """Append to the job's delivery log (one item per attempt key, in the job's partition)."""
        self._ddb.put_item(
            TableName=self._table,
            Item=to_item(
                {
                    "pk": job_pk(job.org_id, job.job_id),
                    "sk": f"DELIVERY#{attempt_key}",
                    "record": json.dumps(record, separators=(",", ":")),
                    "expires_at": int((self._clock() + timedelta(days=self._retention.dead_days)).timestamp()),
                }
            ),
        )


def is_pending(job: Job) -> bool:
    return job.status in PENDING
