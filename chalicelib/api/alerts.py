"""Routes of the contract's alerts and escalations: notify, schedule an escalation, acknowledge."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import unquote

from chalicelib.alerts import SEVERITIES, SEVERITY_PRIORITY
from chalicelib.alerts.incidents import IncidentIndex, default_message, escalation_job_id
from chalicelib.api.http import Call
from chalicelib.api.schema import F, nested, validate
from chalicelib.clock import utcnow
from chalicelib.errors import FieldProblem, ValidationError
from chalicelib.jobs.service import NewJob
from chalicelib.observability import logger
from chalicelib.providers.email import check_email
from chalicelib.services import Services, services
from chalicelib.validation import check_choice, check_phone, check_text

MAX_DELAY_S = 7 * 24 * 3600
MAX_MESSAGE = 1600
# Incident ids become part of a job id (and of URLs): letters, digits and URL-safe punctuation.
INCIDENT_ID = r"[A-Za-z0-9._:~@+=-]{1,200}"
# The incident index outlives its longest escalation by the dead-job retention.
INDEX_SLACK = timedelta(days=31)


def _text(low: int, high: int) -> Any:
    return lambda value, path: check_text(value, path, low, high)


NOTIFY_FIELDS = [
    F("user_id", "any", required=True, check=_text(1, 256)),
    F("phone_number", "any", required=True, check=check_phone),
    F("message", "any", required=True, check=_text(1, MAX_MESSAGE)),
    F("alert_type", "any", required=True, check=_text(1, 128)),
    F("severity", "any", required=True, check=lambda value, path: check_choice(value, path, SEVERITIES)),
]

CONTACT_FIELDS = [
    F("phone_number", "any", check=check_phone),
    F("email", "any", check=check_email),
]


def _check_contact(value: Any, path: str) -> list[FieldProblem]:
    problems = nested(CONTACT_FIELDS)(value, path)
    if not problems and value.get("phone_number") is None and value.get("email") is None:
        problems.append(FieldProblem(path, "must hold a phone_number, an email, or both"))
    return problems


ESCALATION_FIELDS = [
    F("level", "integer", required=True, minimum=1, maximum=1000),
    F("repeat", "integer", required=True, minimum=0, maximum=10_000),
    F("delay_seconds", "integer", required=True, minimum=0, maximum=MAX_DELAY_S),
    F("message", "any", check=_text(1, MAX_MESSAGE)),
    F("contact", "object", required=True, check=_check_contact),
]


def _fields(call: Call, fields: list[F]) -> list[F]:
    return fields + ([F("org_id")] if call.principal.is_operator else [])


def _path_id(call: Call, name: str, pattern: str | None = None) -> str:
    """A path parameter; API Gateway hands them over still percent-encoded (as recipients do)."""
    try:
        value = unquote(call.params.get(name, ""), errors="strict")
    except UnicodeDecodeError:
        value = "\x00"  # reported as not valid below
    problems = check_text(value, name, 1, 256)
    if not problems and pattern is not None:
        problems = F(name, pattern=pattern).problems(value, name)
    if problems:
        raise ValidationError(problems, f"The {name} in the path is not valid.")
    return value


def _index(svc: Services) -> IncidentIndex:
    return IncidentIndex(svc.ddb, svc.settings.table_name)


def notify(call: Call) -> tuple[int, Any]:
    """POST /v1/alerts/{alert_id}/notify: one SMS alert, now (202 with the job)."""
    org_id = call.org_scope()
    alert_id = _path_id(call, "alert_id")
    body = validate(call.body, _fields(call, NOTIFY_FIELDS))
    svc = services()
    job, _ = svc.jobs.enqueue(
        NewJob(
            org_id=org_id,
            type="sms",
            payload={
                "alert_id": alert_id,
                "user_id": body["user_id"],
                "phone_number": body["phone_number"],
                "message": body["message"],
                "alert_type": body["alert_type"],
                "severity": body["severity"],
            },
            priority=SEVERITY_PRIORITY[body["severity"]],
            max_attempts=svc.settings.alert_max_attempts,
            backoff_seconds=svc.settings.alert_backoff_s,
        )
    )
    return 202, job.to_api()


def create_escalation(call: Call) -> tuple[int, Any]:
    """POST /v1/incidents/{incident_id}/escalations: 201 new, 200 with the existing job."""
    org_id = call.org_scope()
    incident_id = _path_id(call, "incident_id", INCIDENT_ID)
    body = validate(call.body, _fields(call, ESCALATION_FIELDS))
    level, repeat, delay = body["level"], body["repeat"], body["delay_seconds"]
    job_id = escalation_job_id(incident_id, level, repeat)
    svc = services()
    contact = {k: v for k, v in body["contact"].items() if v is not None}
    # Index first: an acknowledgement racing with this request finds the job once it exists.
    _index(svc).add(org_id, incident_id, job_id, utcnow() + timedelta(seconds=delay) + INDEX_SLACK)
    job, created = svc.jobs.enqueue(
        NewJob(
            org_id=org_id,
            type="escalation",
            job_id=job_id,
            payload={
                "incident_id": incident_id,
                "level": level,
                "repeat": repeat,
                "message": body.get("message") or default_message(incident_id, level),
                "contact": contact,
            },
            priority="critical",
            delay_seconds=delay,
            max_attempts=svc.settings.escalation_max_attempts,
            backoff_seconds=svc.settings.escalation_backoff_s,
        )
    )
    return (201 if created else 200), job.to_api()


def acknowledge(call: Call) -> tuple[int, Any]:
    """DELETE /v1/incidents/{incident_id}/escalations: cancel every pending escalation."""
    org_id = call.org_scope()
    incident_id = _path_id(call, "incident_id", INCIDENT_ID)
    svc = services()
    index = _index(svc)
    now = utcnow()
    # The acknowledgement first: an escalation that slips past the cancel (it was waiting for a
    # retry, or starting right now) sees it and stands down.
    index.acknowledge(org_id, incident_id, now, now + timedelta(seconds=MAX_DELAY_S) + INDEX_SLACK)
    cancelled = [job_id for job_id in index.job_ids(org_id, incident_id) if svc.store.cancel_if_pending(org_id, job_id)]
    logger.info("incident acknowledged", extra={"incident_id": incident_id, "cancelled": len(cancelled)})
    return 200, {"cancelled": cancelled}
