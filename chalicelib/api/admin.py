"""Routes of the contract's Operations section: queues, dead letters, redrives.

Role admin: an organization's admin sees and redrives its own organization's dead letters only;
the operator sees everything and may redrive a whole queue (SQS's move task) or any subset.
A queue is named by its name (`herald-{stage}-normal`) or its priority (`normal`).
"""

from __future__ import annotations

from typing import Any

from chalicelib.api.http import Call
from chalicelib.api.schema import F, query_int, validate
from chalicelib.errors import ApiError, FieldProblem, ValidationError
from chalicelib.jobs.ledger import BadLedgerCursor, to_api
from chalicelib.ops.dlq import QueueRef
from chalicelib.ops.records import Filters, Redrive, RedriveRunning
from chalicelib.ops.redrive import MAX_PER_SECOND
from chalicelib.services import services

REDRIVE_FIELDS = [
    F("max_per_second", "integer", minimum=1, maximum=MAX_PER_SECOND),
    F("org_id", minimum=1, maximum=128),
    F("type", minimum=1, maximum=64),
    F("error_code", minimum=1, maximum=128),
    F("job_id", minimum=1, maximum=512),
    F("dry_run", "boolean"),
]
# An org id no organization can have: an admin naming another organization matches nothing.
_NO_ORG = "\x00none"


def _queue(call: Call) -> QueueRef:
    ref = services().queue_ops.resolve(call.params.get("name", ""))
    if ref is None:
        raise ApiError(404, "not_found", "No such queue.")
    return ref


def _scope(call: Call, org_id: str | None) -> str | None:
    """The organization a filter is confined to: the admin's own (another org's matches nothing);
    for the operator, the one it names, or None for every organization."""
    own = call.principal.org_id
    if own is None:
        return org_id or None
    return own if org_id in (None, "", own) else _NO_ORG


def _text(query: dict[str, str], name: str, maximum: int) -> str | None:
    value = query.get(name) or None
    if value is not None and (len(value) > maximum or "\x00" in value):
        raise ValidationError([FieldProblem(name, f"must be at most {maximum} characters long")])
    return value


def queues(call: Call) -> tuple[int, Any]:
    """GET /v1/admin/queues"""
    return 200, {"items": services().queue_ops.stats(call.principal.org_id), "next_cursor": None}


def dead_letters(call: Call) -> tuple[int, Any]:
    """GET /v1/admin/queues/{name}/dead-letters: from the ledger. The DLQ is received from only
    when it holds more messages than the ledger lists (SQS moved some there on its own), to enter
    those (`QueueOps.reconcile`)."""
    ref = _queue(call)
    services().queue_ops.reconcile(ref)
    query = call.query
    limit = query_int(query, "limit", 20, 1, 100)
    org_id = _scope(call, _text(query, "org_id", 128))
    if org_id == _NO_ORG:
        return 200, {"items": [], "next_cursor": None}
    try:
        entries, cursor = services().ledger.page(
            ref.name,
            org_id=org_id,
            job_type=_text(query, "type", 64),
            error_code=_text(query, "error_code", 128),
            job_id=_text(query, "job_id", 512),
            limit=limit,
            cursor=query.get("cursor") or None,
        )
    except BadLedgerCursor:
        raise ValidationError([FieldProblem("cursor", "is not a cursor this API gave out")]) from None
    return 200, {"items": [to_api(entry) for entry in entries], "next_cursor": cursor}


def start_redrive(call: Call) -> tuple[int, Any]:
    """POST /v1/admin/queues/{name}/redrive: 202 with the redrive, 200 for a dry run."""
    ref = _queue(call)
    body = validate(call.body, REDRIVE_FIELDS)
    principal = call.principal
    filters = Filters(
        org_id=_scope(call, body.get("org_id")),
        type=body.get("type"),
        error_code=body.get("error_code"),
        job_id=body.get("job_id"),
    )
    # Only the operator, asking for no subset at all, moves the whole queue with SQS's task.
    whole_queue = principal.is_operator and filters.empty
    svc = services().redrives
    if body.get("dry_run"):
        to_move = svc.preview(ref, filters, whole_queue)
        return 200, {"redrive_id": None, "status": "completed", "moved": 0, "to_move": to_move, "dry_run": True}
    try:
        record = svc.start(
            ref,
            filters,
            whole_queue=whole_queue,
            org_id=filters.org_id,
            requested_by=principal.org_id or "operator",
            max_per_second=body.get("max_per_second"),
        )
    except RedriveRunning as running:
        raise ApiError(409, "redrive_running", _running_message(call, ref, running.running)) from None
    return 202, record.to_api()


def _visible(call: Call, record: Redrive) -> bool:
    own = call.principal.org_id
    return own is None or record.org_id == own


def _running_message(call: Call, ref: QueueRef, running: Redrive | None) -> str:
    if running is not None and _visible(call, running):
        return (
            f"Redrive {running.redrive_id} of {ref.name} is still running; follow it with "
            f"GET /v1/admin/queues/{ref.name}/redrive/{running.redrive_id}."
        )
    return f"Another redrive of {ref.name} is running; start this one when it has finished."


def get_redrive(call: Call) -> tuple[int, Any]:
    """GET /v1/admin/queues/{name}/redrive/{redrive_id}: the progress (404 for another org's)."""
    ref = _queue(call)
    redrive_id = call.params.get("redrive_id", "")
    record = services().redrives.get(redrive_id) if 0 < len(redrive_id) <= 64 else None
    if record is None or record.queue != ref.name or not _visible(call, record):
        raise ApiError(404, "not_found", "No such redrive.")
    return 200, record.to_api()
