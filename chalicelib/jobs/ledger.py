"""The dead-letter ledger: what sits in each DLQ, readable without receiving from the DLQ.

SQS cannot peek: a receive hides the message and bumps its receive count. So when a job dies,
the worker writes one ledger item next to sending its message to the DLQ; the API reads the
ledger, and the DLQ's own depth (from GetQueueAttributes) keeps the two honest.
"""

from __future__ import annotations

from typing import Any

from chalicelib.clock import Clock, iso, utcnow
from chalicelib.ddb import from_item, to_item, values


def ledger_pk(queue: str) -> str:
    return f"DEAD#{queue}"


class DeadLetterLedger:
    def __init__(self, ddb: Any, table: str, clock: Clock = utcnow) -> None:
        self._ddb = ddb
        self._table = table
        self._clock = clock

    def record(
        self, queue: str, *, org_id: str, job_id: str, job_type: str, attempts: int, error: dict[str, Any]
    ) -> None:
        """Idempotent: a second record of the same dead job keeps its first_seen_at."""
        now = iso(self._clock())
        self._ddb.update_item(
            TableName=self._table,
            Key=to_item({"pk": ledger_pk(queue), "sk": f"{org_id}#{job_id}"}),
            UpdateExpression=(
                "SET org_id = :org, job_id = :job, #t = :type, attempts = :attempts, last_error = :error, "
                "queue_name = :queue, first_seen_at = if_not_exists(first_seen_at, :now), last_seen_at = :now"
            ),
            ExpressionAttributeNames={"#t": "type"},
            ExpressionAttributeValues=values(
                org=org_id,
                job=job_id,
                type=job_type,
                attempts=attempts,
                error={"code": str(error.get("code", "")), "message": str(error.get("message", ""))},
                queue=queue,
                now=now,
            ),
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

    def remove(self, queue: str, org_id: str, job_id: str) -> None:
        self._ddb.delete_item(TableName=self._table, Key=to_item({"pk": ledger_pk(queue), "sk": f"{org_id}#{job_id}"}))
