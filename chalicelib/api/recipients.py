"""Routes of the contract's Recipients section: PUT/GET/DELETE /v1/recipients/{user_id}, GET list.

Every route takes the member role (see docs/api-notes.md: recipients are contact preferences an
organization's own systems keep in sync; the operator names the organization with `org_id`).
"""

from __future__ import annotations

import functools
import zoneinfo
from typing import Any
from urllib.parse import unquote

from chalicelib.api.http import Call
from chalicelib.api.schema import F, nested, query_int, validate
from chalicelib.digests.schedule import KINDS, is_valid_timezone
from chalicelib.errors import ApiError, FieldProblem, ValidationError
from chalicelib.providers.email import check_email
from chalicelib.recipients import BadCursor, Recipient, RecipientStore
from chalicelib.services import services
from chalicelib.validation import check_phone, check_text

HHMM = r"([01][0-9]|2[0-3]):[0-5][0-9]"


# Files in a system tz database that are not IANA zone names.
_NOT_ZONES = frozenset({"localtime", "posixrules", "Factory"})


@functools.cache
def _zones() -> frozenset[str]:
    """The zone names this runtime knows: the system database's and the `tzdata` package's."""
    return frozenset(zoneinfo.available_timezones()) - _NOT_ZONES


def check_timezone(value: Any, path: str) -> list[FieldProblem]:
    """An IANA zone name this runtime resolves (from the tz database, not a file path)."""
    problem = FieldProblem(path, "must be an IANA time zone name such as America/Chicago")
    if not isinstance(value, str) or not 1 <= len(value) <= 64:
        return [problem]
    if value not in _zones() or not is_valid_timezone(value):
        return [problem]
    return []


def check_digests(value: Any, path: str) -> list[FieldProblem]:
    if not isinstance(value, list):
        return [FieldProblem(path, "must be an array")]
    for i, kind in enumerate(value):
        if not isinstance(kind, str) or kind not in KINDS:
            return [FieldProblem(f"{path}[{i}]", f"must be one of: {', '.join(KINDS)}")]
    if len(set(value)) != len(value):
        return [FieldProblem(path, "must not name a kind twice")]
    return []


QUIET_HOURS = [F("start", required=True, pattern=HHMM), F("end", required=True, pattern=HHMM)]

RECIPIENT_FIELDS = [
    F("email", "any", required=True, check=check_email),
    F("phone_number", "any", check=check_phone),
    F("timezone", "any", required=True, check=check_timezone),
    F("digests", "any", required=True, check=check_digests),
    F("quiet_hours", "object", check=nested(QUIET_HOURS)),
]


def _store() -> RecipientStore:
    svc = services()
    return RecipientStore(svc.ddb, svc.settings.table_name)


def _user_id(call: Call) -> str:
    """The same ids the alerts API takes for `user_id` (1..256 characters of text), so the quiet
    hours stored here apply to the alerts sent to that user. API Gateway hands path parameters
    over still percent-encoded: `auth0%7C42` is the user `auth0|42`."""
    try:
        value = unquote(call.params.get("user_id", ""), errors="strict")
    except UnicodeDecodeError:  # %ff: not UTF-8, so not a user id (a 400, not a 500)
        value = "\x00"  # reported as not valid below
    problems = check_text(value, "user_id", 1, 256)
    if problems:
        raise ValidationError(problems, "The user_id in the path is not valid.")
    return value


def _not_found() -> ApiError:
    return ApiError(404, "not_found", "No such recipient.")


def put_recipient(call: Call) -> tuple[int, Any]:
    org_id = call.org_scope()
    user_id = _user_id(call)
    body = validate(call.body, RECIPIENT_FIELDS)
    quiet = body.get("quiet_hours")
    recipient = Recipient(
        user_id=user_id,
        email=body["email"],
        timezone=body["timezone"],
        digests=tuple(kind for kind in KINDS if kind in body["digests"]),
        phone_number=body.get("phone_number"),
        quiet_hours={"start": quiet["start"], "end": quiet["end"]} if quiet else None,
    )
    stored, created = _store().put(org_id, recipient)
    return (201 if created else 200), stored.to_api(org_id)


def get_recipient(call: Call) -> tuple[int, Any]:
    org_id = call.org_scope()
    found = _store().get(org_id, _user_id(call))
    if found is None:
        raise _not_found()
    return 200, found.to_api(org_id)


def delete_recipient(call: Call) -> tuple[int, Any]:
    org_id = call.org_scope()
    removed = _store().delete(org_id, _user_id(call))
    if removed is None:
        raise _not_found()
    return 200, removed.to_api(org_id)


def list_recipients(call: Call) -> tuple[int, Any]:
    org_id = call.org_scope()
    limit = query_int(call.query, "limit", 20, 1, 100)
    try:
        items, cursor = _store().list(org_id, limit=limit, cursor=call.query.get("cursor") or None)
    except BadCursor:
        raise ValidationError([FieldProblem("cursor", "is not a cursor this API gave out")]) from None
    return 200, {"items": [recipient.to_api(org_id) for recipient in items], "next_cursor": cursor}
