"""Redrive records (pk `REDRIVE#{id}`) and the per-queue lock (pk `REDRIVE#QUEUE#{queue}`).

A record is the progress of one redrive (status, moved, to_move, phase) plus its run lease
(`lease_until`: one invocation works on it at a time) and heartbeat (a GET restarts a redrive
whose heartbeat stopped). The lock keeps one redrive per queue; it has a lease too, renewed by
every invocation, so a redrive whose worker is gone for good frees its queue.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

from botocore.exceptions import ClientError

from chalicelib.clock import Clock, iso, utcnow
from chalicelib.ddb import from_item, is_condition_failure, to_item, values

MOVE_TASK = "move_task"
FILTERED = "filtered"
LOCK_LEASE_S = 3600
RECORD_RETENTION_DAYS = 30


def epoch(clock: Clock) -> int:
    return int(clock().timestamp())


class RedriveRunning(Exception):
    """The queue already has a redrive (Herald's, or an SQS move task started elsewhere)."""

    def __init__(self, running: Redrive | None) -> None:
        super().__init__("a redrive of this queue is running")
        self.running = running


# --- the model -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    org_id: str | None = None
    type: str | None = None
    error_code: str | None = None
    job_id: str | None = None

    @property
    def empty(self) -> bool:
        return not any(asdict(self).values())

    def matches(self, entry: dict[str, Any]) -> bool:
        """Does a ledger entry match?"""
        error = entry.get("last_error") or {}
        return (
            (self.org_id is None or entry.get("org_id") == self.org_id)
            and (self.type is None or entry.get("type") == self.type)
            and (self.error_code is None or error.get("code") == self.error_code)
            and (self.job_id is None or entry.get("job_id") == self.job_id)
        )

    def to_dict(self) -> dict[str, str]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class Redrive:
    """The progress record of one redrive."""

    redrive_id: str
    queue: str
    mode: str
    filters: Filters
    org_id: str | None  # the one organization it is confined to, None: every organization
    requested_by: str
    created_at: str
    status: str = "running"
    phase: str = "reset"
    moved: int = 0
    to_move: int = 0
    skipped: int = 0
    not_found: int = 0
    max_per_second: int | None = None
    finished_at: str | None = None
    error: dict[str, str] | None = None
    outcome: str | None = None
    task_handle: str | None = None
    move_started_ms: int | None = None
    heartbeat: int = 0
    errors: int = 0
    reset_mark: str | None = None

    def to_api(self) -> dict[str, Any]:
        return {
            "redrive_id": self.redrive_id,
            "queue": self.queue,
            "status": self.status,
            "moved": self.moved,
            "to_move": self.to_move,
            "skipped": self.skipped,
            "not_found": self.not_found,
            "mode": self.mode,
            "filters": self.filters.to_dict(),
            "max_per_second": self.max_per_second,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
            "error": self.error,
        }


def _pk(redrive_id: str) -> str:
    return f"REDRIVE#{redrive_id}"


def _lock_pk(queue: str) -> str:
    return f"REDRIVE#QUEUE#{queue}"


_FIELDS = (
    "status", "phase", "moved", "to_move", "skipped", "not_found", "max_per_second", "finished_at", "error",
    "outcome", "task_handle", "move_started_ms", "heartbeat", "errors", "reset_mark",
)  # fmt: skip
_INTS = {"moved", "to_move", "skipped", "not_found", "max_per_second", "move_started_ms", "heartbeat", "errors"}


class RedriveStore:
    """Redrive records and per-queue locks in the service's table."""

    def __init__(self, ddb: Any, table: str, clock: Clock = utcnow) -> None:
        self._ddb = ddb
        self._table = table
        self._clock = clock

    def put(self, record: Redrive) -> None:
        data = {
            "pk": _pk(record.redrive_id),
            "sk": "REDRIVE",
            "redrive_id": record.redrive_id,
            "queue": record.queue,
            "mode": record.mode,
            "filters": record.filters.to_dict(),
            "org_id": record.org_id,
            "requested_by": record.requested_by,
            "created_at": record.created_at,
        }
        data.update({name: getattr(record, name) for name in _FIELDS})
        self._ddb.put_item(TableName=self._table, Item=to_item(data), ConditionExpression="attribute_not_exists(pk)")

    def get(self, redrive_id: str) -> Redrive | None:
        item = self._ddb.get_item(
            TableName=self._table, Key=to_item({"pk": _pk(redrive_id), "sk": "REDRIVE"}), ConsistentRead=True
        ).get("Item")
        if not item:
            return None
        data = from_item(item)
        record = Redrive(
            redrive_id=data["redrive_id"],
            queue=data["queue"],
            mode=data["mode"],
            filters=Filters(**{k: str(v) for k, v in (data.get("filters") or {}).items()}),
            org_id=data.get("org_id"),
            requested_by=data.get("requested_by", ""),
            created_at=data["created_at"],
        )
        for name in _FIELDS:
            if data.get(name) is not None:
                value = data[name]
                setattr(record, name, int(value) if name in _INTS else value)
        return record

    def _update(
        self,
        redrive_id: str,
        update: str,
        condition: str | None = "#s = :running",
        names: dict[str, str] | None = None,
        **vals: Any,
    ) -> bool:
        request: dict[str, Any] = {
            "TableName": self._table,
            "Key": to_item({"pk": _pk(redrive_id), "sk": "REDRIVE"}),
            "UpdateExpression": update,
        }
        names = dict(names or {})
        if "#s" in update or (condition and "#s" in condition):
            names["#s"] = "status"
        if condition:
            request["ConditionExpression"] = condition
            if ":running" in condition:
                vals["running"] = "running"
        if names:
            request["ExpressionAttributeNames"] = names
        if vals:
            request["ExpressionAttributeValues"] = values(**vals)
        try:
            self._ddb.update_item(**request)
        except ClientError as err:
            if is_condition_failure(err):
                return False
            raise
        return True

    def set(self, redrive_id: str, **fields: Any) -> bool:
        """Set fields of a running redrive (and its heartbeat); False when it is not running."""
        fields["heartbeat"] = epoch(self._clock)
        names = {f"#f{i}": name for i, name in enumerate(fields)}
        assignments = ", ".join(f"#f{i} = :v{i}" for i in range(len(fields)))
        vals = {f"v{i}": value for i, value in enumerate(fields.values())}
        return self._update(redrive_id, f"SET {assignments}", names=names, **vals)

    def progress(self, redrive_id: str, moved: int, skipped: int) -> None:
        self._update(
            redrive_id,
            "ADD moved :moved, skipped :skipped SET heartbeat = :now",
            moved=moved,
            skipped=skipped,
            now=epoch(self._clock),
        )

    def claim(self, redrive_id: str, owner: str, lease_s: int) -> bool:
        """Take the run lease: only one invocation works on a redrive at a time."""
        now = epoch(self._clock)
        return self._update(
            redrive_id,
            "SET lease_until = :until, lease_owner = :owner, heartbeat = :now",
            "#s = :running AND (attribute_not_exists(lease_until) OR lease_until < :now)",
            until=now + lease_s,
            owner=owner,
            now=now,
        )

    def beat(self, redrive_id: str, owner: str, lease_s: int) -> bool:
        """Renew the run lease; False when it is no longer this owner's (or the redrive ended)."""
        now = epoch(self._clock)
        return self._update(
            redrive_id,
            "SET lease_until = :until, heartbeat = :now",
            "#s = :running AND lease_owner = :owner",
            until=now + lease_s,
            owner=owner,
            now=now,
        )

    def unclaim(self, redrive_id: str, owner: str) -> None:
        self._update(redrive_id, "SET lease_until = :zero", "lease_owner = :owner", zero=0, owner=owner)

    def failed_invocation(self, redrive_id: str) -> int:
        """Count an invocation that raised; returns how many did so far."""
        response = self._ddb.update_item(
            TableName=self._table,
            Key=to_item({"pk": _pk(redrive_id), "sk": "REDRIVE"}),
            UpdateExpression="ADD errors :one",
            ExpressionAttributeValues=values(one=1),
            ReturnValues="UPDATED_NEW",
        )
        return int(from_item(response["Attributes"]).get("errors", 1))

    def revive(self, record: Redrive) -> bool:
        """Claim the right to restart a stalled redrive (one GET wins, the others do nothing)."""
        return self._update(
            record.redrive_id,
            "SET heartbeat = :now",
            "#s = :running AND heartbeat = :old AND (attribute_not_exists(lease_until) OR lease_until < :now)",
            now=epoch(self._clock),
            old=record.heartbeat,
        )

    def finish(self, record: Redrive, status: str, error: dict[str, str] | None = None) -> bool:
        """Final status (only from `running`); frees the queue's lock."""
        now = self._clock()
        done = self._update(
            record.redrive_id,
            "SET #s = :status, finished_at = :now, expires_at = :exp, #e = :error REMOVE lease_until",
            names={"#e": "error"},
            status=status,
            now=iso(now),
            exp=int((now + timedelta(days=RECORD_RETENTION_DAYS)).timestamp()),
            error=error,
        )
        self.release(record.queue, record.redrive_id)
        return done

    # --- the per-queue lock --------------------------------------------------------------

    def acquire(self, queue: str, redrive_id: str, stale: str | None = None) -> str | None:
        """Take the queue's lock; None when taken, else the id of the redrive holding it.
        `stale`: take it over from that holder (it is known to be finished)."""
        now = epoch(self._clock)
        condition = "attribute_not_exists(pk) OR lease_until < :now"
        vals: dict[str, Any] = {"now": now}
        if stale is not None:
            condition += " OR redrive_id = :stale"
            vals["stale"] = stale
        try:
            self._ddb.put_item(
                TableName=self._table,
                Item=to_item(
                    {"pk": _lock_pk(queue), "sk": "LOCK", "redrive_id": redrive_id, "lease_until": now + LOCK_LEASE_S}
                ),
                ConditionExpression=condition,
                ExpressionAttributeValues=values(**vals),
            )
        except ClientError as err:
            if not is_condition_failure(err):
                raise
            item = self._ddb.get_item(
                TableName=self._table, Key=to_item({"pk": _lock_pk(queue), "sk": "LOCK"}), ConsistentRead=True
            ).get("Item")
            return str(from_item(item)["redrive_id"]) if item else ""
        return None

    def renew(self, queue: str, redrive_id: str) -> None:
        try:
            self._ddb.update_item(
                TableName=self._table,
                Key=to_item({"pk": _lock_pk(queue), "sk": "LOCK"}),
                UpdateExpression="SET lease_until = :until",
                ConditionExpression="redrive_id = :id",
                ExpressionAttributeValues=values(until=epoch(self._clock) + LOCK_LEASE_S, id=redrive_id),
            )
        except ClientError as err:
            if not is_condition_failure(err):
                raise

    def release(self, queue: str, redrive_id: str) -> None:
        try:
            self._ddb.delete_item(
                TableName=self._table,
                Key=to_item({"pk": _lock_pk(queue), "sk": "LOCK"}),
                ConditionExpression="redrive_id = :id",
                ExpressionAttributeValues=values(id=redrive_id),
            )
        except ClientError as err:
            if not is_condition_failure(err):
                raise
