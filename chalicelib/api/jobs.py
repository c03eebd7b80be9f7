"""Routes of the contract's Jobs section (generic jobs) and the webhook secret."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from chalicelib import netguard
from chalicelib.api.http import Call
from chalicelib.api.schema import F, check_object, query_int
from chalicelib.errors import ApiError, FatalError, FieldProblem, RetryableError, ValidationError
from chalicelib.jobs.model import PRIORITIES, STATUSES
from chalicelib.jobs.service import NewJob
from chalicelib.jobs.store import BadCursor, Conflict, NotFound
from chalicelib.jobs.types import PAYLOADS, payload_problems
from chalicelib.services import services

MAX_DELAY_S = 7 * 24 * 3600
IDEMPOTENCY_KEY = r"[A-Za-z0-9._:\-]{1,255}"

JOB_FIELDS = [
    F("type", required=True, maximum=64),
    F("payload", "object", required=True),
    F("delay_seconds", "integer", minimum=0, maximum=MAX_DELAY_S),
    F("priority", choices=PRIORITIES),
    F("idempotency_key", pattern=IDEMPOTENCY_KEY),
    F("max_attempts", "integer", minimum=1, maximum=10),
    F("backoff_seconds", "integer", minimum=1, maximum=3600),
]


def _no_resolve(host: str, port: int) -> list[str]:
    return []  # names are checked at delivery time, when they are resolved


def create_job(call: Call) -> tuple[int, Any]:
    org_id = call.org_scope()
    fields = JOB_FIELDS + ([F("org_id")] if call.principal.is_operator else [])
    problems = check_object(call.body, fields)
    body = call.body if isinstance(call.body, dict) else {}
    job_type = body.get("type")
    if isinstance(job_type, str) and job_type not in PAYLOADS:
        problems.append(FieldProblem("type", f"must be one of: {', '.join(PAYLOADS)}"))
    elif isinstance(job_type, str) and isinstance(body.get("payload"), dict):
        problems += payload_problems(job_type, body["payload"])
    if problems:
        raise ValidationError(problems[:50])
    svc = services()
    if job_type == "webhook":
        try:
            netguard.check_url(body["payload"]["url"], svc.settings.allow_private_targets, _no_resolve)
        except FatalError as err:
            raise ValidationError(
                [FieldProblem("payload.url", err.message)], "The webhook target is not allowed."
            ) from None
        except RetryableError:
            pass  # a host name: resolved and vetted at delivery time (DNS answers change)
    job, created = svc.jobs.enqueue(
        NewJob(
            org_id=org_id,
            type=str(job_type),
            payload=body["payload"],
            priority=body.get("priority") or "normal",
            delay_seconds=body.get("delay_seconds") or 0,
            idempotency_key=body.get("idempotency_key"),
            max_attempts=body.get("max_attempts"),
            backoff_seconds=body.get("backoff_seconds"),
        )
    )
    return (202 if created else 200), job.to_api()


def _job_id(call: Call) -> str:
    """API Gateway hands path parameters over still percent-encoded: `incident%3Ax%3Alevel%3A1...`
    is the escalation job `incident:x:level:1...` (as alerts and recipients decode theirs)."""
    try:
        job_id = unquote(call.params.get("job_id", ""), errors="strict")
    except UnicodeDecodeError:
        job_id = ""
    if not job_id or len(job_id.encode("utf-8", "surrogatepass")) > 512:
        raise ApiError(404, "not_found", "No such job.")
    return job_id


def get_job(call: Call) -> tuple[int, Any]:
    job = services().store.get(call.org_scope(), _job_id(call))
    if job is None:
        raise ApiError(404, "not_found", "No such job.")
    return 200, job.to_api()


def cancel_job(call: Call) -> tuple[int, Any]:
    try:
        job = services().store.cancel(call.org_scope(), _job_id(call))
    except NotFound:
        raise ApiError(404, "not_found", "No such job.") from None
    except Conflict as err:
        raise ApiError(
            409, "conflict", f"The job is {err.job.status}; only scheduled or queued jobs can be cancelled."
        ) from None
    return 200, job.to_api()


def list_jobs(call: Call) -> tuple[int, Any]:
    query = call.query
    problems = []
    status = query.get("status") or None
    job_type = query.get("type") or None
    if status is not None and status not in STATUSES:
        problems.append(FieldProblem("status", f"must be one of: {', '.join(STATUSES)}"))
    if job_type is not None and len(job_type) > 64:
        problems.append(FieldProblem("type", "must be at most 64 characters long"))
    if problems:
        raise ValidationError(problems)
    limit = query_int(query, "limit", 20, 1, 100)
    try:
        jobs, cursor = services().store.list(
            call.org_scope(), status=status, job_type=job_type, limit=limit, cursor=query.get("cursor") or None
        )
    except BadCursor:
        raise ValidationError([FieldProblem("cursor", "is not a cursor this API gave out")]) from None
    return 200, {"items": [job.to_api() for job in jobs], "next_cursor": cursor}


def get_webhook_secret(call: Call) -> tuple[int, Any]:
    return 200, {"secret": services().orgs.webhook_secret(call.org_scope())}


def rotate_webhook_secret(call: Call) -> tuple[int, Any]:
    return 200, {"secret": services().orgs.rotate_webhook_secret(call.org_scope())}
