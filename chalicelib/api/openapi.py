"""The OpenAPI 3.1 description of Herald's HTTP API (shared/spec/api.md), built as a dict.

`chalicelib/openapi.json` is what the app serves (the Lambda reads the file; it never imports
this module). Regenerate it after changing a route, a request field or this module:

    python -m chalicelib.api.openapi > chalicelib/openapi.json

Request bodies are derived from the validators' own field lists (`F`: jobs and their payloads,
alerts, escalations, recipients, redrives), so a field added there shows up here, and a field
whose `check` this module cannot describe stops the build. tests/unit/test_openapi.py keeps the
rest true: the file is what this module builds, every route of the app is documented with its
methods, and representative answers of the app validate against the documented responses.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from chalicelib.alerts import SEVERITIES
from chalicelib.api import admin, alerts, recipients
from chalicelib.api.http import MAX_BODY_BYTES
from chalicelib.api.jobs import JOB_FIELDS, MAX_DELAY_S
from chalicelib.api.schema import F
from chalicelib.digests.schedule import KINDS as DIGEST_KINDS
from chalicelib.jobs import types as job_types
from chalicelib.jobs.model import PRIORITIES, STATUSES
from chalicelib.providers.email import check_email
from chalicelib.validation import check_phone

Schema = dict[str, Any]

E164 = r"^\+[1-9][0-9]{1,14}$"
TIMESTAMP = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$"
REDRIVE_STATUSES = ("running", "completed", "failed", "cancelled")
NOT_NULL = ["object", "array", "string", "number", "integer", "boolean"]


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


# --- request bodies derived from the validators' field lists --------------------------------
TEXT = "Not blank; no control characters but tab and line breaks."
PHONE: Schema = {"type": "string", "pattern": E164, "maxLength": 16, "examples": ["+15551234567"]}
EMAIL: Schema = {"type": "string", "format": "email", "maxLength": 254}

# What a shared `check` function accepts, as JSON Schema. A field whose check is neither here
# nor described by name (`overrides` of `object_schema`) stops the build: describe it.
CHECKS: dict[Callable[..., Any], Schema] = {
    check_phone: PHONE,
    check_email: EMAIL,
    job_types._check_url: {
        "type": "string",
        "pattern": r"^https?://[^\s/?#@]+(/[^\s]*)?$",
        "examples": ["https://hooks.example.com/herald"],
    },
    job_types._check_headers: {
        "type": "object",
        "maxProperties": 50,
        "additionalProperties": {"type": "string", "maxLength": 4096, "pattern": r"^[^\r\n\x00]*$"},
    },
    job_types._check_recipients: {
        "oneOf": [EMAIL, {"type": "array", "minItems": 1, "maxItems": 50, "items": EMAIL}],
    },
}
_KINDS = {"string": "string", "integer": "integer", "object": "object", "array": "array", "boolean": "boolean"}


def text(low: int, high: int) -> Schema:
    return {"type": "string", "minLength": low, "maxLength": high, "description": TEXT}


def or_null(schema: Schema) -> Schema:
    """Optional fields also take null: the validator treats it as absent."""
    schema = dict(schema)
    if isinstance(schema.get("type"), str):
        schema["type"] = [schema["type"], "null"]
    elif isinstance(schema.get("type"), list) and "null" not in schema["type"]:
        schema["type"] = [*schema["type"], "null"]
    elif "oneOf" in schema:
        schema["oneOf"] = [*schema["oneOf"], {"type": "null"}]
    if "enum" in schema:
        schema["enum"] = [*schema["enum"], None]
    return schema


def field_schema(field: F, override: Schema | None = None) -> Schema:
    """One `F` as JSON Schema: its kind and bounds, then what its check accepts."""
    schema: Schema = {"type": _KINDS[field.kind]} if field.kind in _KINDS else {}
    if field.kind == "string":
        bounds = {"minLength": field.minimum, "maxLength": field.maximum}
        schema.update({k: v for k, v in bounds.items() if v is not None})
        if field.choices is not None:
            schema["enum"] = list(field.choices)
        if field.pattern is not None:
            schema["pattern"] = f"^(?:{field.pattern})$"
    elif field.kind == "integer":
        schema.update({k: v for k, v in {"minimum": field.minimum, "maximum": field.maximum}.items() if v is not None})
    if override is not None:
        schema = dict(override)
    elif field.check is not None:
        if field.check not in CHECKS:
            raise KeyError(
                f"describe field {field.name!r} (check {field.check.__qualname__}) in chalicelib/api/openapi.py"
            )
        schema.update(CHECKS[field.check])
    elif field.kind == "any":
        schema = {"type": list(NOT_NULL)}
    return schema if field.required else or_null(schema)


def object_schema(fields: Sequence[F], overrides: dict[str, Schema] | None = None, **extra: Any) -> Schema:
    """A request body the validator checks with `fields` (unknown fields are refused)."""
    overrides = overrides or {}
    schema: Schema = {"type": "object"}
    if any(f.required for f in fields):
        schema["required"] = [f.name for f in fields if f.required]
    schema["properties"] = {f.name: field_schema(f, overrides.get(f.name)) for f in fields}
    return {**schema, "additionalProperties": False, **extra}


OPERATOR_ORG = {
    "type": ["string", "null"],
    "description": "Operator only: the organization. Any other caller gets a 400.",
}


def job_request() -> Schema:
    schema = object_schema(
        JOB_FIELDS,
        {
            "type": {"type": "string", "enum": list(job_types.PAYLOADS)},
            "payload": {"type": "object", "description": "Its shape depends on `type`."},
        },
    )
    schema["properties"]["org_id"] = OPERATOR_ORG
    schema["properties"]["delay_seconds"]["description"] = f"0..{MAX_DELAY_S} (7 days); above 0 the job is `scheduled`."
    schema["properties"]["backoff_seconds"]["description"] = "Base of the exponential backoff with jitter."
    schema["oneOf"] = [
        {"properties": {"type": {"const": name}, "payload": ref(f"{name.capitalize()}Payload")}}
        for name in job_types.PAYLOADS
    ]
    return schema


def payload_schemas() -> dict[str, Schema]:
    return {f"{name.capitalize()}Payload": object_schema(fields) for name, fields in job_types.PAYLOADS.items()}


def alert_request() -> Schema:
    schema = object_schema(
        alerts.NOTIFY_FIELDS,
        {
            "user_id": text(1, 256),
            "phone_number": PHONE,
            "message": text(1, alerts.MAX_MESSAGE),
            "alert_type": text(1, 128),
            "severity": {
                "type": "string",
                "enum": list(SEVERITIES),
                "description": "critical > warning > info (priority).",
            },
        },
    )
    schema["properties"]["org_id"] = OPERATOR_ORG
    return schema


def redrive_request() -> Schema:
    schema = object_schema(admin.REDRIVE_FIELDS)
    schema["properties"]["org_id"]["description"] = (
        "The operator: one organization (none: every one). An admin: its own only (another org matches nothing)."
    )
    schema["properties"]["dry_run"]["description"] = "Count the matching dead letters; move nothing (200)."
    return schema


def recipient_request() -> Schema:
    return object_schema(
        recipients.RECIPIENT_FIELDS,
        {
            "timezone": {
                "type": "string",
                "minLength": 1,
                "maxLength": 64,
                "description": "An IANA name.",
                "examples": ["America/Chicago"],
            },
            "digests": {"type": "array", "uniqueItems": True, "items": {"type": "string", "enum": list(DIGEST_KINDS)}},
            "quiet_hours": {
                **object_schema(recipients.QUIET_HOURS),
                "description": "An `info` SMS alert inside the window waits for its end.",
            },
        },
    )


def escalation_request() -> Schema:
    present = [{"required": [name], "properties": {name: {"type": "string"}}} for name in ("phone_number", "email")]
    contact = object_schema(alerts.CONTACT_FIELDS, anyOf=present, description="At least one of phone_number and email.")
    schema = object_schema(
        alerts.ESCALATION_FIELDS,
        {
            "message": {
                **text(1, alerts.MAX_MESSAGE),
                "description": "Default: a standard text naming the incident and level.",
            },
            "contact": contact,
        },
    )
    schema["properties"]["org_id"] = OPERATOR_ORG
    return schema


# --- the rest of the contract, written out -------------------------------------------------
def nullable(schema: Schema) -> Schema:
    return {"oneOf": [schema, {"type": "null"}]}


def list_of(item: Schema, description: str) -> Schema:
    return {
        "type": "object",
        "description": description,
        "required": ["items", "next_cursor"],
        "additionalProperties": False,
        "properties": {
            "items": {"type": "array", "maxItems": 100, "items": item},
            "next_cursor": {
                "type": ["string", "null"],
                "description": "Pass as `cursor` for the next page; null on the last.",
            },
        },
    }


def timestamp(nullable_: bool = False) -> Schema:
    return {
        "type": ["string", "null"] if nullable_ else "string",
        "pattern": TIMESTAMP,
        "examples": ["2025-01-31T07:00:00.000Z"],
    }


def schemas() -> dict[str, Schema]:
    problem = {
        "type": "object",
        "required": ["field", "problem"],
        "additionalProperties": False,
        "properties": {"field": {"type": "string"}, "problem": {"type": "string"}},
    }
    job_error = {
        "type": "object",
        "required": ["code", "message", "retryable"],
        "additionalProperties": False,
        "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "retryable": {"type": "boolean"}},
    }
    quiet_hours = object_schema(recipients.QUIET_HOURS)
    return {
        "Error": {
            "type": "object",
            "required": ["error"],
            "additionalProperties": False,
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "additionalProperties": False,
                    "properties": {
                        "code": {"type": "string", "pattern": "^[a-z][a-z0-9_]*$", "examples": ["validation_error"]},
                        "message": {"type": "string", "minLength": 1},
                        "details": {
                            "type": "array",
                            "items": problem,
                            "description": "On validation errors: one per problem.",
                        },
                    },
                }
            },
        },
        "Health": {
            "type": "object",
            "required": ["status", "checks"],
            "additionalProperties": False,
            "properties": {
                "status": {"type": "string", "enum": ["ok", "degraded"]},
                "checks": {
                    "type": "object",
                    "additionalProperties": {"type": "string"},
                    "description": "Per dependency (table, each queue and DLQ): `ok` or `error: <kind>`.",
                },
            },
        },
        "Job": {
            "type": "object",
            "required": [
                "job_id",
                "org_id",
                "type",
                "status",
                "priority",
                "attempts",
                "max_attempts",
                "created_at",
                "run_at",
                "started_at",
                "finished_at",
                "result",
                "error",
            ],
            "additionalProperties": False,
            "properties": {
                "job_id": {"type": "string", "minLength": 1},
                "org_id": {"type": "string", "minLength": 1},
                "type": {"type": "string", "examples": ["sms", "email", "webhook", "escalation", "digest"]},
                "status": {
                    "type": "string",
                    "enum": list(STATUSES),
                    "description": "scheduled: waiting for run_at; failed: a retry is pending; "
                    "completed, dead and cancelled are final.",
                },
                "priority": {"type": "string", "enum": list(PRIORITIES)},
                "attempts": {"type": "integer", "minimum": 0},
                "max_attempts": {"type": "integer", "minimum": 1},
                "created_at": timestamp(),
                "run_at": timestamp(),
                "started_at": timestamp(nullable_=True),
                "finished_at": timestamp(nullable_=True),
                "result": {"type": ["object", "null"]},
                "error": nullable(job_error),
                "idempotency_key": {"type": "string", "description": "When the job was created with one."},
                "deliveries": {
                    "type": "array",
                    "items": {"type": "object"},
                    "description": "The delivery log, when any.",
                },
            },
        },
        "JobList": list_of(ref("Job"), "The organization's jobs, newest first."),
        "JobRequest": job_request(),
        **payload_schemas(),
        "WebhookSecret": {
            "type": "object",
            "required": ["secret"],
            "additionalProperties": False,
            "properties": {"secret": {"type": "string", "pattern": "^whsec_[A-Za-z0-9+/]+={0,2}$"}},
        },
        "AlertRequest": alert_request(),
        "EscalationRequest": escalation_request(),
        "EscalationsCancelled": {
            "type": "object",
            "required": ["cancelled"],
            "additionalProperties": False,
            "properties": {"cancelled": {"type": "array", "items": {"type": "string"}}},
        },
        "RecipientRequest": recipient_request(),
        "Recipient": {
            "type": "object",
            "required": ["user_id", "org_id", "email", "phone_number", "timezone", "digests", "quiet_hours"],
            "additionalProperties": False,
            "properties": {
                "user_id": {"type": "string"},
                "org_id": {"type": "string"},
                "email": {"type": "string"},
                "phone_number": {"type": ["string", "null"]},
                "timezone": {"type": "string"},
                "digests": {"type": "array", "items": {"type": "string", "enum": list(DIGEST_KINDS)}},
                "quiet_hours": nullable(quiet_hours),
                "created_at": timestamp(nullable_=True),
                "updated_at": timestamp(nullable_=True),
            },
        },
        "RecipientList": list_of(ref("Recipient"), "The organization's recipients."),
        "DigestRunRequest": {
            "type": "object",
            "required": ["kind"],
            "additionalProperties": False,
            "properties": {
                "kind": {"type": "string", "enum": list(DIGEST_KINDS)},
                "org_id": {
                    "type": ["string", "null"],
                    "minLength": 1,
                    "maxLength": 256,
                    "description": "Operator only: one organization (every one when absent). "
                    "Any other caller gets a 400.",
                },
            },
        },
        "Queue": {
            "type": "object",
            "required": ["name", "visible", "in_flight", "delayed", "dlq_name", "dlq_depth", "oldest_message_age_s"],
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string"},
                "priority": {"type": "string", "enum": list(PRIORITIES)},
                "visible": {"type": "integer", "minimum": 0},
                "in_flight": {"type": "integer", "minimum": 0},
                "delayed": {"type": "integer", "minimum": 0},
                "dlq_name": {"type": "string"},
                "dlq_depth": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "An admin: its own organization's dead letters.",
                },
                "dead_letters_recorded": {"type": "integer", "minimum": 0},
                "oldest_message_age_s": {"type": ["number", "null"], "minimum": 0},
            },
        },
        "QueueList": list_of(ref("Queue"), "Every queue, with its dead-letter queue."),
        "DeadLetter": {
            "type": "object",
            "required": ["message_id", "job_id", "org_id", "type", "attempts", "last_error", "first_seen_at"],
            "additionalProperties": False,
            "properties": {
                "message_id": {"type": ["string", "null"]},
                "job_id": {"type": ["string", "null"]},
                "org_id": {"type": ["string", "null"]},
                "type": {"type": ["string", "null"]},
                "attempts": {"type": "integer", "minimum": 0},
                "last_error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "additionalProperties": False,
                    "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                },
                "first_seen_at": timestamp(),
            },
        },
        "DeadLetterList": list_of(ref("DeadLetter"), "Dead letters, left in the DLQ."),
        "RedriveRequest": redrive_request(),
        "Redrive": {
            "type": "object",
            "required": ["redrive_id", "status", "moved", "to_move"],
            "additionalProperties": False,
            "properties": {
                "redrive_id": {"type": ["string", "null"], "description": "null for a dry run"},
                "status": {"type": "string", "enum": list(REDRIVE_STATUSES)},
                "moved": {"type": "integer", "minimum": 0},
                "to_move": {"type": "integer", "minimum": 0},
                "dry_run": {"type": "boolean"},
                "queue": {"type": "string"},
                "mode": {
                    "type": "string",
                    "enum": ["move_task", "filtered"],
                    "description": "move_task: SQS moves the whole DLQ (operator, no filter); filtered: one by one.",
                },
                "filters": {"type": "object", "additionalProperties": {"type": "string"}},
                "skipped": {"type": "integer", "minimum": 0},
                "not_found": {"type": "integer", "minimum": 0},
                "max_per_second": {"type": ["integer", "null"], "minimum": 1},
                "created_at": timestamp(),
                "finished_at": timestamp(nullable_=True),
                "error": {"oneOf": [{"type": "object", "additionalProperties": {"type": "string"}}, {"type": "null"}]},
            },
        },
    }


def error_response(description: str, code: str | None = None, headers: dict[str, Any] | None = None) -> Schema:
    schema = ref("Error")
    if code is not None:
        schema = {"allOf": [ref("Error"), {"properties": {"error": {"properties": {"code": {"const": code}}}}}]}
    response: Schema = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        response["headers"] = headers
    return response


RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer", "minimum": 1}}}


def responses() -> dict[str, Schema]:
    return {
        "BadRequest": error_response(
            "Invalid input: `validation_error` with `details` per field, `malformed_json`, or `org_required` "
            "(an operator token that names no `org_id`)."
        ),
        "Unauthorized": error_response(
            "Missing or unknown bearer token.",
            "unauthorized",
            {"WWW-Authenticate": {"schema": {"type": "string"}}},
        ),
        "Forbidden": error_response("Known token, role too low for this route.", "forbidden"),
        "NotFound": error_response(
            "No such resource in the caller's organization (another org's id answers the same)."
        ),
        "Conflict": error_response("The resource is not in a state that allows this."),
        "PayloadTooLarge": error_response(
            f"The request body is over {MAX_BODY_BYTES // 1024} KiB.", "payload_too_large"
        ),
        "TooManyRequests": error_response(
            "The organization's request rate is over its limit.", "rate_limited", RETRY_AFTER
        ),
        "ServiceUnavailable": error_response(
            "A service Herald relies on is unavailable or throttling (`service_unavailable`), or a job could not "
            "be queued (`queue_unavailable`: nothing was created). Retry after `Retry-After`.",
            None,
            RETRY_AFTER,
        ),
    }


def parameters() -> dict[str, Schema]:
    def path(name: str, description: str, **schema: Any) -> Schema:
        return {
            "name": name,
            "in": "path",
            "required": True,
            "description": description,
            "schema": {"type": "string", "minLength": 1, **schema},
        }

    def query(name: str, description: str, schema: Schema) -> Schema:
        return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}

    return {
        "JobId": path("job_id", "A job id of the caller's organization.", maxLength=512),
        "AlertId": path("alert_id", "The caller's alert id.", maxLength=256),
        "IncidentId": path("incident_id", "The caller's incident id.", pattern=f"^(?:{alerts.INCIDENT_ID})$"),
        "UserId": path(
            "user_id", "The recipient's user id (as alerts name it), scoped to the organization.", maxLength=256
        ),
        "QueueName": path(
            "name",
            "A queue's name as GET /v1/admin/queues lists it (`herald-{stage}-{priority}`), or its priority.",
            anyOf=[{"enum": list(PRIORITIES)}, {"pattern": f"^herald-[a-z]+-({'|'.join(PRIORITIES)})$"}],
        ),
        "RedriveId": path("redrive_id", "As POST .../redrive answered.", maxLength=64),
        "Limit": query("limit", "Page size.", {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}),
        "Cursor": query("cursor", "The `next_cursor` of the previous page.", {"type": "string"}),
        "OrgId": query("org_id", "Operator only: the organization to act on.", {"type": "string"}),
        "JobStatus": query("status", "Only jobs in this status.", {"type": "string", "enum": list(STATUSES)}),
        "JobType": query("type", "Only jobs of this type.", {"type": "string", "maxLength": 64}),
        "ErrorCode": query(
            "error_code", "Only dead letters whose last error has this code.", {"type": "string", "maxLength": 128}
        ),
        "DeadJobId": query("job_id", "Only this job's dead letter.", {"type": "string", "maxLength": 512}),
    }


# --- operations ----------------------------------------------------------------------------
def _param(name: str) -> Schema:
    return {"$ref": f"#/components/parameters/{name}"}


def _resp(name: str) -> Schema:
    return {"$ref": f"#/components/responses/{name}"}


def _ok(description: str, schema_name: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": ref(schema_name)}}}


def op(
    operation_id: str,
    summary: str,
    tag: str,
    ok: dict[str, Schema],
    *,
    role: str | None = "member",
    body: str | None = None,
    body_required: bool = True,
    params: Sequence[str] = (),
    errors: Sequence[int] = (),
) -> Schema:
    """One operation: `ok` are its success answers; the usual error answers follow from the rest."""
    codes: dict[str, Schema] = dict(ok)
    if role is not None:
        # Every authenticated route: 400 (validation, or an operator naming no org), 401, 429, and
        # 503 when the token table (or whatever else the route needs) cannot be reached.
        codes["400"] = _resp("BadRequest")
        codes["401"] = _resp("Unauthorized")
        if role != "member":
            codes["403"] = _resp("Forbidden")
        codes["429"] = _resp("TooManyRequests")
        codes["503"] = _resp("ServiceUnavailable")
    if body is not None:
        codes["413"] = _resp("PayloadTooLarge")
    named = {404: "NotFound", 409: "Conflict", 503: "ServiceUnavailable"}
    for code in errors:
        codes[str(code)] = _resp(named[code])
    operation: Schema = {"operationId": operation_id, "summary": summary, "tags": [tag]}
    if role is None:
        operation["security"] = []
    else:
        operation["x-herald-role"] = role
    if params:
        operation["parameters"] = [_param(p) for p in params]
    if body is not None:
        operation["requestBody"] = {
            "required": body_required,
            "content": {"application/json": {"schema": ref(body) if body != "Any" else {}}},
        }
    operation["responses"] = dict(sorted(codes.items()))
    return operation


def paths() -> dict[str, Schema]:
    job = "Job"
    return {
        "/health": {
            "get": op(
                "getHealth",
                "Reachability of the table and every queue.",
                "public",
                {
                    "200": _ok("Everything is reachable.", "Health"),
                    "503": _ok("Something is not reachable (`status`: degraded).", "Health"),
                },
                role=None,
            ),
        },
        "/openapi.json": {
            "get": op(
                "getOpenApi",
                "This document.",
                "public",
                {
                    "200": {
                        "description": "OpenAPI 3.1.",
                        "content": {
                            "application/json": {"schema": {"type": "object", "required": ["openapi", "info", "paths"]}}
                        },
                    },
                },
                role=None,
            ),
        },
        "/admin": {
            "get": op(
                "getDashboard",
                "The operations dashboard (asks for a token; holds no data).",
                "public",
                {
                    "200": {"description": "An HTML page.", "content": {"text/html": {"schema": {"type": "string"}}}},
                },
                role=None,
            ),
        },
        "/ping": {
            "get": op(
                "ping",
                "Does nothing (no token, no AWS call): the baseline of the latency benchmark.",
                "public",
                {
                    "200": {
                        "description": "Always.",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["ok"],
                                    "properties": {"ok": {"const": True}},
                                    "additionalProperties": False,
                                }
                            }
                        },
                    },
                },
                role=None,
            ),
        },
        "/v1/jobs": {
            "post": op(
                "createJob",
                "Enqueue a generic job.",
                "jobs",
                {
                    "200": _ok("The job that already holds this idempotency key.", job),
                    "202": _ok("Accepted: the new job.", job),
                },
                body="JobRequest",
                errors=[503],
            ),
            "get": op(
                "listJobs",
                "The organization's jobs, newest first.",
                "jobs",
                {
                    "200": _ok("A page of jobs.", "JobList"),
                },
                params=["JobStatus", "JobType", "Limit", "Cursor", "OrgId"],
            ),
        },
        "/v1/jobs/{job_id}": {
            "get": op(
                "getJob", "One job.", "jobs", {"200": _ok("The job.", job)}, params=["JobId", "OrgId"], errors=[404]
            ),
            "delete": op(
                "cancelJob",
                "Cancel a scheduled or queued job.",
                "jobs",
                {
                    "200": _ok("The job, now cancelled; its handler never runs.", job),
                },
                params=["JobId", "OrgId"],
                errors=[404, 409],
            ),
        },
        "/v1/webhook-secret": {
            "get": op(
                "getWebhookSecret",
                "The organization's webhook signing secret.",
                "webhooks",
                {
                    "200": _ok("The secret (Standard Webhooks form).", "WebhookSecret"),
                },
                role="admin",
                params=["OrgId"],
            ),
        },
        "/v1/webhook-secret/rotate": {
            "post": op(
                "rotateWebhookSecret",
                "Replace the webhook signing secret.",
                "webhooks",
                {
                    "200": _ok("The new secret.", "WebhookSecret"),
                },
                role="admin",
                body="Any",
                body_required=False,
                params=["OrgId"],
            ),
        },
        "/v1/alerts/{alert_id}/notify": {
            "post": op(
                "notifyAlert",
                "Send one SMS alert now (an `info` one inside quiet hours waits).",
                "alerts",
                {
                    "202": _ok("Accepted: the SMS job.", job),
                },
                body="AlertRequest",
                params=["AlertId"],
                errors=[503],
            ),
        },
        "/v1/incidents/{incident_id}/escalations": {
            "post": op(
                "scheduleEscalation",
                "Schedule an escalation reminder.",
                "incidents",
                {
                    "200": _ok("This escalation exists already: the job, whatever its status.", job),
                    "201": _ok("The new escalation job.", job),
                },
                body="EscalationRequest",
                params=["IncidentId"],
                errors=[503],
            ),
            "delete": op(
                "cancelEscalations",
                "Cancel every pending escalation of the incident.",
                "incidents",
                {
                    "200": _ok("The cancelled job ids (empty when none was pending).", "EscalationsCancelled"),
                },
                params=["IncidentId"],
            ),
        },
        "/v1/recipients": {
            "get": op(
                "listRecipients",
                "The organization's recipients.",
                "recipients",
                {
                    "200": _ok("A page of recipients.", "RecipientList"),
                },
                params=["Limit", "Cursor", "OrgId"],
            ),
        },
        "/v1/recipients/{user_id}": {
            "put": op(
                "putRecipient",
                "Create or replace a recipient.",
                "recipients",
                {
                    "200": _ok("Replaced.", "Recipient"),
                    "201": _ok("Created.", "Recipient"),
                },
                body="RecipientRequest",
                params=["UserId", "OrgId"],
            ),
            "get": op(
                "getRecipient",
                "One recipient.",
                "recipients",
                {"200": _ok("The recipient.", "Recipient")},
                params=["UserId", "OrgId"],
                errors=[404],
            ),
            "delete": op(
                "deleteRecipient",
                "Remove a recipient.",
                "recipients",
                {
                    "200": _ok("The removed recipient.", "Recipient"),
                },
                params=["UserId", "OrgId"],
                errors=[404],
            ),
        },
        "/v1/digests/run": {
            "post": op(
                "runDigest",
                "Run a digest now (admin: own organization; operator: `org_id` or all).",
                "digests",
                {
                    "202": _ok("Accepted: the fan-out job (type `digest`).", job),
                },
                role="admin",
                body="DigestRunRequest",
                errors=[503],
            ),
        },
        "/v1/admin/queues": {
            "get": op(
                "listQueues",
                "Depths of every queue and its DLQ.",
                "operations",
                {
                    "200": _ok("Every queue.", "QueueList"),
                },
                role="admin",
                params=["OrgId"],
            ),
        },
        "/v1/admin/queues/{name}/dead-letters": {
            "get": op(
                "listDeadLetters",
                "Dead letters, without consuming them.",
                "operations",
                {
                    "200": _ok("A page of dead letters (an admin: its own organization's).", "DeadLetterList"),
                },
                role="admin",
                params=["QueueName", "Limit", "Cursor", "OrgId", "JobType", "ErrorCode", "DeadJobId"],
                errors=[404],
            ),
        },
        "/v1/admin/queues/{name}/redrive": {
            "post": op(
                "startRedrive",
                "Move matching dead letters back to their source queue.",
                "operations",
                {
                    "200": _ok("Dry run: `to_move` counted, nothing moved.", "Redrive"),
                    "202": _ok("Started.", "Redrive"),
                },
                role="admin",
                body="RedriveRequest",
                body_required=False,
                params=["QueueName"],
                errors=[404, 409],
            ),
        },
        "/v1/admin/queues/{name}/redrive/{redrive_id}": {
            "get": op(
                "getRedrive",
                "A redrive's progress.",
                "operations",
                {"200": _ok("The redrive.", "Redrive")},
                role="admin",
                params=["QueueName", "RedriveId"],
                errors=[404],
            ),
        },
    }


def document() -> Schema:
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "info": {
            "title": "Herald",
            "version": "1",
            "summary": "Notifications and jobs: SMS alerts, escalations, digests, webhooks.",
            "description": (
                "Every `/v1` route needs `Authorization: Bearer <token>`; a token resolves to an organization "
                "and a role (member < admin), or to the platform operator, who names the organization with "
                "`org_id`. Another organization's ids answer 404, like ids that do not exist. Every 4xx/5xx "
                "body is the `Error` schema. Lists are `{items, next_cursor}`, `limit` 20 by default, 100 at "
                "most. Times are ISO-8601 UTC with milliseconds and a Z. Bodies over 256 KiB answer 413."
            ),
        },
        "servers": [{"url": ".", "description": "The API's base URL: where this document is served."}],
        "security": [{"bearerAuth": []}],
        "tags": [
            {"name": t}
            for t in ("public", "jobs", "webhooks", "alerts", "incidents", "recipients", "digests", "operations")
        ],
        "paths": paths(),
        "components": {
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "description": "A Herald token (`hrld_...`)."}
            },
            "schemas": schemas(),
            "responses": responses(),
            "parameters": parameters(),
        },
    }


def render() -> str:
    return json.dumps(document(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
