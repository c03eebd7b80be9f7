"""The job types clients may enqueue with POST /v1/jobs, and what their payloads must hold."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from chalicelib.api.schema import F, check_object
from chalicelib.errors import FieldProblem
from chalicelib.providers.email import check_email
from chalicelib.validation import check_phone


def _check_url(value: Any, path: str) -> list[FieldProblem]:
    try:
        parts = urlsplit(value)
        port_ok = parts.port is None or 0 < parts.port < 65536
    except ValueError:
        return [FieldProblem(path, "must be an absolute http(s) URL")]
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        return [FieldProblem(path, "must be an absolute http(s) URL")]
    if parts.username or parts.password:
        return [FieldProblem(path, "must not carry credentials")]
    return []


def _check_headers(value: Any, path: str) -> list[FieldProblem]:
    if len(value) > 50:
        return [FieldProblem(path, "may hold at most 50 headers")]
    for name, header in value.items():
        if not isinstance(header, str) or len(header) > 4096 or len(name) > 256:
            return [FieldProblem(f"{path}.{name[:64]}", "must be a string of at most 4096 characters")]
        if any(c in name + header for c in "\r\n\x00") or not name.strip():
            return [FieldProblem(f"{path}.{name[:64]}", "must not contain line breaks or NUL")]
    return []


def _check_recipients(value: Any, path: str) -> list[FieldProblem]:
    if isinstance(value, str):
        return check_email(value, path)
    if isinstance(value, list) and 1 <= len(value) <= 50:
        return [p for i, v in enumerate(value) for p in check_email(v, f"{path}[{i}]")]
    return [FieldProblem(path, "must be an email address or a list of 1 to 50 of them")]


PAYLOADS: dict[str, list[F]] = {
    "sms": [
        F("phone_number", required=True, check=check_phone),
        F("message", required=True, minimum=1, maximum=1600),
    ],
    "email": [
        F("to", "any", required=True, check=_check_recipients),
        F("subject", required=True, minimum=1, maximum=998),
        F("text", required=True, minimum=1, maximum=100_000),
        F("html", minimum=1, maximum=200_000),
    ],
    "webhook": [
        F("url", required=True, minimum=8, maximum=2048, check=_check_url),
        F("body", "any", required=True),
        F("headers", "object", check=_check_headers),
    ],
}

# (max_attempts, backoff_seconds) when the request does not say: notifications 5 x 2 s,
# escalations 3 x 5 s (the seed design's numbers).
DEFAULTS: dict[str, tuple[int, int]] = {
    "sms": (5, 2),
    "email": (5, 2),
    "webhook": (5, 2),
    "escalation": (3, 5),
    "digest": (5, 2),
}


def payload_problems(job_type: str, payload: Any) -> list[FieldProblem]:
    return check_object(payload, PAYLOADS[job_type], prefix="payload")
