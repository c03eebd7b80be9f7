"""Escalations of an incident: their ids, their default text, and the incident's index.

The index (pk `INCIDENT#{org}#{incident_id}`) holds one small item per escalation job
(sk `JOB#{job_id}`), written before the job, so acknowledging an incident finds every escalation
with one query instead of a scan of the org's jobs. It also holds the acknowledgement itself
(sk `ACK`): an escalation that was created before it and runs after it (one that was `failed`
and waiting for a retry, which cancelling cannot stop) is skipped by its handler.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from chalicelib.clock import iso, parse_iso
from chalicelib.ddb import from_item, to_item, values

ACK_SK = "ACK"


def escalation_job_id(incident_id: str, level: int, repeat: int) -> str:
    return f"incident:{incident_id}:level:{level}:repeat:{repeat}"


def default_message(incident_id: str, level: int) -> str:
    return (
        f"Escalation level {level}: incident {incident_id} has not been acknowledged yet. "
        "Please look into it and acknowledge it."
    )


def incident_pk(org_id: str, incident_id: str) -> str:
    return f"INCIDENT#{org_id}#{incident_id}"


class IncidentIndex:
    def __init__(self, ddb: Any, table: str) -> None:
        self._ddb = ddb
        self._table = table

    def add(self, org_id: str, incident_id: str, job_id: str, expires_at: datetime) -> None:
        """Idempotent: posting the same escalation again re-puts the same item."""
        self._ddb.put_item(
            TableName=self._table,
            Item=to_item(
                {
                    "pk": incident_pk(org_id, incident_id),
                    "sk": f"JOB#{job_id}",
                    "job_id": job_id,
                    "expires_at": int(expires_at.timestamp()),
                }
            ),
        )

    def job_ids(self, org_id: str, incident_id: str) -> list[str]:
        query: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :job)",
            "ExpressionAttributeValues": values(pk=incident_pk(org_id, incident_id), job="JOB#"),
            "ConsistentRead": True,
        }
        ids: list[str] = []
        while True:
            response = self._ddb.query(**query)
            ids.extend(str(from_item(item)["job_id"]) for item in response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                return ids
            query["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def acknowledge(self, org_id: str, incident_id: str, at: datetime, expires_at: datetime) -> None:
        self._ddb.put_item(
            TableName=self._table,
            Item=to_item(
                {
                    "pk": incident_pk(org_id, incident_id),
                    "sk": ACK_SK,
                    "acknowledged_at": iso(at),
                    "expires_at": int(expires_at.timestamp()),
                }
            ),
        )

    def acknowledged_at(self, org_id: str, incident_id: str) -> datetime | None:
        item = self._ddb.get_item(
            TableName=self._table,
            Key=to_item({"pk": incident_pk(org_id, incident_id), "sk": ACK_SK}),
            ConsistentRead=True,
        ).get("Item")
        return parse_iso(from_item(item)["acknowledged_at"]) if item else None
