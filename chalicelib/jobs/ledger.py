"""The dead-letter ledger: what sits in each DLQ, readable without receiving from the DLQ.

SQS cannot peek: a receive hides the message and bumps its receive count. So when a job dies,
the worker writes one ledger item next to sending its burial message on its way to the DLQ
(chalicelib/jobs/burial.py); the API reads the ledger, and the DLQ's own depth (from
GetQueueAttributes) keeps the two honest. A message SQS moved to the DLQ on its own (its receive
count ran out: a worker that crashed every time) is entered by `reconcile` in chalicelib/ops/dlq.py.
"""

from __future__ import annotations

import builtins
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from chalicelib.clock import Clock, iso, utcnow
from chalicelib.ddb import decode_cursor, encode_cursor, from_item, is_condition_failure, to_item, values
from chalicelib.jobs.model import Envelope, EnvelopeError

if TYPE_CHECKING:
    from chalicelib.jobs.model import Job
    from chalicelib.jobs.queue import JobQueue


def ledger_pk(queue: str) -> str:
    return f"DEAD#{queue}"


def message_key(message: dict[str, Any]) -> tuple[str, str] | None:
    """(org_id, job_id) of a DLQ message (as ReceiveMessage returns it): from its envelope, else
    from its attributes."""
    try:
        envelope = Envelope.from_json(message.get("Body") or "")
        return envelope.org_id, envelope.job_id
    except EnvelopeError:
        attributes = message.get("MessageAttributes") or {}
        org = (attributes.get("org_id") or {}).get("StringValue")
        job = (attributes.get("job_id") or {}).get("StringValue")
        return (str(org), str(job)) if org and job else None


class BadLedgerCursor(ValueError):
    """A cursor this ledger did not hand out (or one for another queue or organization)."""


def to_api(entry: dict[str, Any]) -> dict[str, Any]:
    """A ledger entry as the API shows a dead letter."""
    error = entry.get("last_error") or {}
    return {
        "message_id": entry.get("message_id"),
        "job_id": entry.get("job_id"),
        "org_id": entry.get("org_id"),
        "type": entry.get("type"),
        "attempts": int(entry.get("attempts", 0)),
        "last_error": {"code": str(error.get("code", "")), "message": str(error.get("message", ""))},
        "first_seen_at": entry.get("first_seen_at"),
    }


class DeadLetterLedger:
    def __init__(self, ddb: Any, table: str, clock: Clock = utcnow) -> None:
        self._ddb = ddb
        self._table = table
        self._clock = clock

    def bury(self, queue: JobQueue, priority: str, job: Job, error: dict[str, Any]) -> str:
        """Send a dead job's burial message (its envelope naming `job.burial`) on its way to the
        priority's DLQ, then its entry here (what the API lists and redrive works from); the
        message's id. The job record says `dead` with that burial already."""
        message_id = queue.send_to_bury(
            priority,
            Envelope.of(job, burial=job.burial).to_json(),
            {
                "job_id": job.job_id,
                "org_id": job.org_id,
                "type": job.type,
                "error_code": str(error.get("code", "")),
                "error_message": str(error.get("message", "")),
            },
            group=job.org_id,
        )
        self.record(
            queue.queue_name(priority),
            org_id=job.org_id,
            job_id=job.job_id,
            job_type=job.type,
            attempts=job.attempts,
            error=error,
            message_id=message_id,
            burial=job.burial,
        )
        return message_id

    def record(
        self,
        queue: str,
        *,
        org_id: str,
        job_id: str,
        job_type: str,
        attempts: int,
        error: dict[str, Any],
        message_id: str | None = None,
        burial: str | None = None,
    ) -> None:
        """Idempotent: a second record of the same dead job keeps its first_seen_at.

        `message_id` is the id of the job's message in the DLQ (what the API shows).
        """
        now = iso(self._clock())
        update = (
            "SET org_id = :org, job_id = :job, #t = :type, attempts = :attempts, last_error = :error, "
            "queue_name = :queue, first_seen_at = if_not_exists(first_seen_at, :now), last_seen_at = :now"
        )
        vals: dict[str, Any] = {
            "org": org_id,
            "job": job_id,
            "type": job_type,
            "attempts": attempts,
            "error": {"code": str(error.get("code", "")), "message": str(error.get("message", ""))},
            "queue": queue,
            "now": now,
        }
        if message_id:
            update += ", message_id = :mid"
            vals["mid"] = message_id
        if burial:
            update += ", burial = :burial"
            vals["burial"] = burial
        self._ddb.update_item(
            TableName=self._table,
            Key=to_item({"pk": ledger_pk(queue), "sk": f"{org_id}#{job_id}"}),
            UpdateExpression=update,
            ExpressionAttributeNames={"#t": "type"},
            ExpressionAttributeValues=values(**vals),
        )

    def list(self, queue: str, org_id: str | None = None) -> list[dict[str, Any]]:
        """Every ledger entry of a queue (optionally one org's), oldest first."""
        expression = "pk = :pk"
        vals: dict[str, Any] = {"pk": ledger_pk(queue)}
        if org_id is not None:
            expression += " AND begins_with(sk, :org)"
            vals["org"] = f"{org_id}#"
        items: list[dict[str, Any]] = []
        query: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": expression,
            "ExpressionAttributeValues": values(**vals),
            "ConsistentRead": True,
        }
        while True:
            response = self._ddb.query(**query)
            items.extend(from_item(item) for item in response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                break
            query["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        items.sort(key=lambda entry: entry.get("first_seen_at", ""))
        return items

    def page(
        self,
        queue: str,
        *,
        org_id: str | None = None,
        job_type: str | None = None,
        error_code: str | None = None,
        job_id: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> tuple[builtins.list[dict[str, Any]], str | None]:
        """One page of a queue's entries, ordered by organization and job id; filters apply
        server-side and pages are filled up to `limit`. BadLedgerCursor for a foreign cursor."""
        pk = ledger_pk(queue)
        expression = "pk = :pk"
        vals: dict[str, Any] = {"pk": pk}
        if org_id is not None and job_id is not None:
            expression += " AND sk = :sk"
            vals["sk"] = f"{org_id}#{job_id}"
        elif org_id is not None:
            expression += " AND begins_with(sk, :org)"
            vals["org"] = f"{org_id}#"
        names: dict[str, str] = {}
        filters: list[str] = []
        if job_type:
            filters.append("#t = :type")
            names["#t"] = "type"
            vals["type"] = job_type
        if error_code:
            filters.append("#le.#code = :code")
            names.update({"#le": "last_error", "#code": "code"})
            vals["code"] = error_code
        if job_id is not None and org_id is None:
            filters.append("job_id = :job")
            vals["job"] = job_id
        query: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": expression,
            "ExpressionAttributeValues": values(**vals),
            "ConsistentRead": True,
        }
        if filters:
            query["FilterExpression"] = " AND ".join(filters)
            query["ExpressionAttributeNames"] = names
        start: dict[str, Any] | None = None
        if cursor:
            try:
                start = decode_cursor(cursor)
            except ValueError:
                raise BadLedgerCursor(cursor) from None
            sk = start.get("sk", {}).get("S", "")
            if set(start) != {"pk", "sk"} or start["pk"].get("S") != pk or (org_id and not sk.startswith(f"{org_id}#")):
                raise BadLedgerCursor(cursor)
        entries: builtins.list[dict[str, Any]] = []
        while True:
            request = dict(query, Limit=100 if filters else max(limit - len(entries), 1))
            if start:
                request["ExclusiveStartKey"] = start
            response = self._ddb.query(**request)
            for item in response.get("Items", []):
                entries.append(from_item(item))
                if len(entries) == limit:
                    return entries, encode_cursor({"pk": item["pk"], "sk": item["sk"]})
            start = response.get("LastEvaluatedKey")
            if not start:
                return entries, None

    def count(self, queue: str, org_id: str | None = None) -> int:
        """How many entries a queue's ledger holds (one organization's, when named)."""
        expression = "pk = :pk"
        vals: dict[str, Any] = {"pk": ledger_pk(queue)}
        if org_id is not None:
            expression += " AND begins_with(sk, :org)"
            vals["org"] = f"{org_id}#"
        query: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": expression,
            "ExpressionAttributeValues": values(**vals),
            "Select": "COUNT",
        }
        total = 0
        while True:
            response = self._ddb.query(**query)
            total += int(response.get("Count", 0))
            if "LastEvaluatedKey" not in response:
                return total
            query["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def get(self, queue: str, org_id: str, job_id: str) -> dict[str, Any] | None:
        """One job's entry in a queue's ledger, or None."""
        response = self._ddb.get_item(
            TableName=self._table,
            Key=to_item({"pk": ledger_pk(queue), "sk": f"{org_id}#{job_id}"}),
            ConsistentRead=True,
        )
        item = response.get("Item")
        return from_item(item) if item else None

    def remove(
        self, queue: str, org_id: str, job_id: str, *, seen_at: str | None = None, burial: str | None = None
    ) -> bool:
        """Delete an entry; with `seen_at`, only if it was not recorded again since (a job that
        died again after a redrive keeps its new entry); with `burial`, only that burial's entry.
        False when that condition failed."""
        request: dict[str, Any] = {
            "TableName": self._table,
            "Key": to_item({"pk": ledger_pk(queue), "sk": f"{org_id}#{job_id}"}),
        }
        if seen_at is not None:
            request["ConditionExpression"] = "attribute_not_exists(pk) OR last_seen_at = :seen"
            request["ExpressionAttributeValues"] = values(seen=seen_at)
        elif burial is not None:
            request["ConditionExpression"] = "attribute_not_exists(pk) OR burial = :burial"
            request["ExpressionAttributeValues"] = values(burial=burial)
        try:
            self._ddb.delete_item(**request)
        except ClientError as err:
            if is_condition_failure(err):
                return False
            raise
        return True
