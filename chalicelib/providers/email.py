"""Email through Amazon SES (v1 ``SendEmail``), and the email-address check the API shares.

The provider takes its SES client in the constructor (built lazily by the client factory, or by
moto/LocalStack in tests) and turns every SES failure into the job error that says what to do:
fatal when resending the same message cannot succeed, retryable when SES or the network may
recover.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import (  # type: ignore[import-untyped, unused-ignore]
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ParamValidationError,
    ReadTimeoutError,
)

from chalicelib.errors import FatalError, FieldProblem, RetryableError
from chalicelib.observability import logger

# SES refuses more than 50 recipients per message.
MAX_RECIPIENTS = 50

# SES errors that the same request will hit again: the message, sender or configuration is wrong.
_FATAL_CODES = frozenset(
    {
        "MessageRejected",
        "MailFromDomainNotVerifiedException",
        "MailFromDomainNotVerified",
        "InvalidParameterValue",
        "InvalidParameterCombination",
        "ValidationError",
        "ConfigurationSetDoesNotExist",
        "ConfigurationSetSendingPausedException",
        "AccountSendingPausedException",
        "AccessDenied",
        "AccessDeniedException",
    }
)
# SES errors that go away by themselves: rate limits, daily quota, service trouble.
_RETRYABLE_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "TooManyRequestsException",
        "RequestThrottled",
        "LimitExceeded",
        "LimitExceededException",
        "ServiceUnavailable",
        "InternalFailure",
        "InternalError",
        "RequestTimeout",
    }
)

_LOCAL_PART = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
_DOMAIN_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_TLD = re.compile(r"^([A-Za-z]{2,63}|xn--[A-Za-z0-9-]{1,59})$")
_TAG_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def check_email(value: object, field: str) -> list[FieldProblem]:
    """Problems with ``value`` as a deliverable address (``[]`` when fine).

    Deliberately the practical subset SES and mail servers accept (``name@example.com``), not all
    of RFC 5322: quoted local parts, comments and IP-literal domains are refused because they are
    almost always typos or injection attempts in a notification service. Internationalised
    domains are accepted (checked in their IDNA form); non-ASCII local parts are not, SES v1
    cannot send to them.
    """
    problem = "must be an email address like name@example.com"
    if not isinstance(value, str) or not value:
        return [FieldProblem(field, problem)]
    if len(value) > 254 or value.count("@") != 1:
        return [FieldProblem(field, problem)]
    local, domain = value.split("@")
    if len(local) > 64 or not _LOCAL_PART.match(local):
        return [FieldProblem(field, problem)]
    try:
        ascii_domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        return [FieldProblem(field, problem)]
    labels = ascii_domain.split(".")
    if len(ascii_domain) > 253 or len(labels) < 2:
        return [FieldProblem(field, problem)]
    if not all(_DOMAIN_LABEL.match(label) for label in labels) or not _TLD.match(labels[-1]):
        return [FieldProblem(field, problem)]
    return []


@dataclass(frozen=True)
class EmailMessage:
    """One email. ``source`` overrides the provider's default sender (it must be verified in SES)."""

    to: list[str]
    subject: str
    text: str
    html: str | None = None
    source: str | None = None


def _snake(code: str) -> str:
    code = code.removesuffix("Exception")
    return re.sub(r"(?<!^)(?=[A-Z])", "_", code).lower()


def _tag_value(key: str) -> str:
    """SES tag values allow only ``[A-Za-z0-9_-]``, at most 256 characters (LocalStack: 255)."""
    return _TAG_UNSAFE.sub("_", key)[:255] or "_"


class SesEmailProvider:
    """Sends :class:`EmailMessage` through SES ``SendEmail`` with a text and, if given, an HTML part."""

    def __init__(self, ses_client: Any, source: str) -> None:
        problems = check_email(source, "source")
        if problems:
            raise ValueError(f"The SES sender {source!r} is not an email address.")
        self._ses = ses_client
        self.source = source

    def _validate(self, msg: EmailMessage) -> None:
        problems: list[FieldProblem] = []
        if not msg.to:
            problems.append(FieldProblem("to", "must name at least one recipient"))
        elif len(msg.to) > MAX_RECIPIENTS:
            problems.append(FieldProblem("to", f"must name at most {MAX_RECIPIENTS} recipients"))
        for i, address in enumerate(msg.to):
            problems.extend(check_email(address, f"to[{i}]"))
        if msg.source is not None:
            problems.extend(check_email(msg.source, "source"))
        if not msg.subject or "\r" in msg.subject or "\n" in msg.subject:
            problems.append(FieldProblem("subject", "must be one non-empty line"))
        if problems:
            summary = "; ".join(f"{p.field} {p.problem}" for p in problems)
            raise FatalError("invalid_email", f"The email cannot be sent: {summary}.")

    def send(self, msg: EmailMessage, *, idempotency_key: str) -> str:
        """Send ``msg``; return the SES MessageId.

        SES v1 has no idempotency token, so de-duplication is the caller's job (the job store
        records the MessageId of a completed send). The key still travels as the message tag
        ``herald-idempotency-key`` so SES event publishing (bounces, deliveries) can be tied back
        to the job, and it is logged next to the MessageId.
        """
        self._validate(msg)
        body: dict[str, Any] = {"Text": {"Data": msg.text, "Charset": "UTF-8"}}
        if msg.html is not None:
            body["Html"] = {"Data": msg.html, "Charset": "UTF-8"}
        try:
            response = self._ses.send_email(
                Source=msg.source or self.source,
                Destination={"ToAddresses": list(msg.to)},
                Message={"Subject": {"Data": msg.subject, "Charset": "UTF-8"}, "Body": body},
                Tags=[{"Name": "herald-idempotency-key", "Value": _tag_value(idempotency_key)}],
            )
        except ClientError as exc:
            raise _classify_client_error(exc) from exc
        except (ConnectTimeoutError, ReadTimeoutError) as exc:
            raise RetryableError("timeout", f"SES did not answer in time: {exc}.") from exc
        except (EndpointConnectionError, ConnectionClosedError) as exc:
            raise RetryableError("connection_error", f"Could not reach SES: {exc}.") from exc
        except ParamValidationError as exc:
            raise FatalError("invalid_email", f"SES refused the request's shape: {exc}.") from exc
        except BotoCoreError as exc:
            # Credentials not yet available, a proxy hiccup...: nothing about the message itself.
            raise RetryableError("ses_client_error", f"SES call failed: {exc}.") from exc
        message_id = str(response["MessageId"])
        logger.info(
            "email sent",
            extra={
                "ses_message_id": message_id,
                "idempotency_key": idempotency_key,
                "recipients": len(msg.to),
            },
        )
        return message_id


def _classify_client_error(exc: ClientError) -> FatalError | RetryableError:
    """Fatal when SES refuses this message/sender/configuration, retryable when SES is busy or down.

    Unknown 4xx are fatal (the request itself is wrong; an operator can redrive after fixing it);
    unknown 5xx and anything without a status are retried.
    """
    error = exc.response.get("Error", {})
    code = str(error.get("Code") or "Unknown")
    message = str(error.get("Message") or code)
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    job_code = f"ses_{_snake(code)}"
    if code in _RETRYABLE_CODES or status >= 500 or status == 429:
        return RetryableError(job_code, f"SES is unavailable or throttling: {message}")
    if code in _FATAL_CODES or 400 <= status < 500:
        return FatalError(job_code, f"SES refused the email: {message}")
    return RetryableError(job_code, f"SES call failed: {message}")
