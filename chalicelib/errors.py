"""Errors shared by the API and the workers.

A job handler signals what should happen to its message by what it raises:

* returns normally      -> the job is done (``completed``);
* ``RetryableError``    -> the attempt failed, try again later with backoff
                           (``retry_after`` seconds overrides the backoff, e.g. from a
                           ``Retry-After`` header);
* ``FatalError``        -> no retry can help: the job is ``dead`` at once;
* anything else         -> treated as retryable (an unexpected bug may be transient).

A handler that must not run *yet* (quiet hours, a provider's throughput cap) raises ``Deferred``:
the job goes back to ``scheduled`` at ``run_at``, and the attempt is not counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


class JobError(Exception):
    """Base class of the errors a job handler raises on purpose."""

    retryable: bool = True

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def as_dict(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message, "retryable": self.retryable}


class RetryableError(JobError):
    retryable = True

    def __init__(self, code: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(code, message)
        self.retry_after = retry_after


class FatalError(JobError):
    retryable = False


class Deferred(Exception):
    """Not now: run the job again at `run_at` (not an error, and not a counted attempt).

    `decision`, when given, is recorded on the job (`result.deferred` while it waits, and
    `meta.deferral` for the handler's next run), so a client can see why it is scheduled.
    """

    def __init__(self, run_at: datetime, reason: str, decision: dict[str, Any] | None = None) -> None:
        super().__init__(f"deferred until {run_at.isoformat()}: {reason}")
        self.run_at = run_at
        self.reason = reason
        self.decision = decision


@dataclass(frozen=True)
class FieldProblem:
    field: str
    problem: str


class ApiError(Exception):
    """An HTTP error with the contract's body: {"error": {"code", "message", "details"?}}."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: list[FieldProblem] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers or {}

    def body(self) -> dict[str, object]:
        error: dict[str, object] = {"code": self.code, "message": self.message}
        if self.details is not None:
            error["details"] = [{"field": d.field, "problem": d.problem} for d in self.details]
        return {"error": error}


class ValidationError(ApiError):
    def __init__(self, details: list[FieldProblem], message: str = "The request is not valid.") -> None:
        super().__init__(400, "validation_error", message, details)
