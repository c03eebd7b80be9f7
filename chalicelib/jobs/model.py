"""Jobs as the API shows them, and the versioned envelope every queue message carries."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from chalicelib.clock import iso, parse_iso

STATUSES = ("scheduled", "queued", "active", "completed", "failed", "dead", "cancelled")
FINAL = frozenset({"completed", "dead", "cancelled"})
PENDING = frozenset({"scheduled", "queued"})
PRIORITIES = ("critical", "high", "normal", "low")
ENVELOPE_VERSION = 1


def new_job_id() -> str:
    return "job_" + uuid.uuid4().hex


@dataclass
class Job:
    """One job record. `payload` and `meta` stay server-side: the API shows neither."""

    job_id: str
    org_id: str
    type: str
    status: str
    priority: str
    created_at: datetime
    run_at: datetime
    payload: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    attempts: int = 0
    max_attempts: int = 5
    backoff_seconds: int = 2
    started_at: datetime | None = None
    finished_at: datetime | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    idempotency_key: str | None = None
    correlation_id: str = ""
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    # Set when the job dies: the id of its burial, carried by the message that goes to the DLQ
    # (see chalicelib/jobs/burial.py); only that message, coming back out of the DLQ, revives it.
    burial: str | None = None
    # The highest receive count seen of the burial message on its way to the DLQ.
    burial_receives: int = 0

    @property
    def is_final(self) -> bool:
        return self.status in FINAL

    def to_api(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "job_id": self.job_id,
            "org_id": self.org_id,
            "type": self.type,
            "status": self.status,
            "priority": self.priority,
            "attempts": self.attempts,
            "max_attempts": self.max_attempts,
            "created_at": iso(self.created_at),
            "run_at": iso(self.run_at),
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "result": self.result,
            "error": self.error,
        }
        if self.idempotency_key is not None:
            body["idempotency_key"] = self.idempotency_key
        if self.deliveries:
            body["deliveries"] = self.deliveries
        return body


class EnvelopeError(ValueError):
    """A queue message that is not a Herald envelope this code can run."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Envelope:
    """What travels on the queues: ids and timing only, never the payload or any secret."""

    job_id: str
    org_id: str
    type: str
    run_at: datetime
    correlation_id: str
    attempt: int = 0
    version: int = ENVELOPE_VERSION
    # An outcome message: attempt `attempt` already had its effect, with this result, but the
    # worker could not record it (the table was unreachable). Its receive records it; nothing runs.
    outcome: dict[str, Any] | None = None
    # A burial message: the dead job's message on its way to (or back from) the DLQ, naming the
    # burial (`Job.burial`) it belongs to. A message without it never revives a dead job.
    burial: str | None = None

    @classmethod
    def of(
        cls,
        job: Job,
        *,
        attempt: int | None = None,
        outcome: dict[str, Any] | None = None,
        burial: str | None = None,
    ) -> Envelope:
        """The envelope of `job` (its current attempt unless `attempt` says another)."""
        return cls(
            job_id=job.job_id,
            org_id=job.org_id,
            type=job.type,
            run_at=job.run_at,
            correlation_id=job.correlation_id,
            attempt=job.attempts if attempt is None else attempt,
            outcome=outcome,
            burial=burial,
        )

    def to_json(self) -> str:
        body: dict[str, Any] = {
            "v": self.version,
            "job_id": self.job_id,
            "org_id": self.org_id,
            "type": self.type,
            "attempt": self.attempt,
            "run_at": iso(self.run_at),
            "correlation_id": self.correlation_id,
        }
        if self.outcome is not None:
            body["outcome"] = self.outcome
        if self.burial is not None:
            body["burial"] = self.burial
        return json.dumps(body, separators=(",", ":"))

    @classmethod
    def from_json(cls, body: str) -> Envelope:
        try:
            data = json.loads(body)
        except (TypeError, ValueError):
            raise EnvelopeError("malformed_envelope", "the message body is not JSON") from None
        if not isinstance(data, dict):
            raise EnvelopeError("malformed_envelope", "the message body is not a JSON object")
        if data.get("v") != ENVELOPE_VERSION:
            raise EnvelopeError("unknown_envelope_version", f"envelope version {data.get('v')!r} is not supported")
        try:
            envelope = cls(
                job_id=_text(data, "job_id"),
                org_id=_text(data, "org_id"),
                type=_text(data, "type"),
                run_at=parse_iso(_text(data, "run_at")),
                correlation_id=str(data.get("correlation_id") or ""),
                attempt=int(data.get("attempt") or 0),
                outcome=_outcome(data.get("outcome")),
                burial=_text(data, "burial") if data.get("burial") is not None else None,
            )
        except (KeyError, TypeError, ValueError) as err:
            raise EnvelopeError("malformed_envelope", f"the envelope is incomplete: {err}") from None
        return envelope


def _outcome(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if (
        not isinstance(value, dict)
        or value.get("status") != "completed"
        or not isinstance(value.get("result"), dict | None)
    ):
        raise ValueError("outcome must be {status: completed, result}")
    return {"status": "completed", "result": value.get("result")}


def _text(data: dict[str, Any], key: str) -> str:
    value = data[key]
    if not isinstance(value, str) or not value or len(value) > 512:
        raise ValueError(f"{key} must be a non-empty string")
    return value
