"""SMS providers: Amazon SNS and Telnyx behind one small interface.

Workers only call ``SmsProvider.send`` and react to what it raises (see ``chalicelib.errors``):
``RetryableError`` when trying again later can help (throttling, provider outages, network
trouble), ``FatalError`` when it cannot (bad number, opted out, bad credentials). ``code`` carries
the provider's own error code (``telnyx_40300``, ``sns_InvalidParameter``, ``network_error``) so
dead letters can be filtered by it.

Secrets: the Telnyx API key never appears in a log line, an exception or a repr. Phone numbers
are logged masked, and provider error texts are scrubbed of anything that looks like one.

Nothing here builds a client or opens a connection at import time: the SNS and SSM clients are
passed in, and ``build_sms_provider`` takes zero-argument factories so they are only built when
the first SMS goes out.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import urllib3
from botocore.exceptions import (  # type: ignore[import-untyped, unused-ignore]
    BotoCoreError,
    ClientError,
    HTTPClientError,
    ParamValidationError,
)
from botocore.exceptions import (  # type: ignore[import-untyped, unused-ignore]
    ConnectionError as BotoConnectionError,
)

from chalicelib.errors import FatalError, RetryableError
from chalicelib.observability import logger, mask_phone

__all__ = [
    "SmsProvider",
    "SmsSendResult",
    "SnsSmsProvider",
    "TelnyxConfig",
    "TelnyxSmsProvider",
    "build_sms_provider",
    "load_telnyx_config",
    "reset_telnyx_config_cache",
]

TELNYX_DEFAULT_BASE_URL = "https://api.telnyx.com"
TELNYX_DEFAULT_TIMEOUT = (3.0, 10.0)  # (connect, read) seconds

# Telnyx error codes (https://developers.telnyx.com/development/api-fundamentals/api-errors):
# 10009 authentication failed, 40001 not routable (landline), 40300 recipient replied STOP,
# 40310 / 40311 invalid or non-SMS-capable "to" number. No retry can fix these.
TELNYX_FATAL_CODES = frozenset({"10009", "40001", "40300", "40310", "40311"})
# 40400 temporarily unreachable, 50000 / 50001 Telnyx internal errors: worth another try.
TELNYX_RETRYABLE_CODES = frozenset({"40400", "50000", "50001"})

# SNS Publish (and SSM) errors that no retry can fix (bad input, opted-out number, missing
# permission, a disabled KMS key): the job goes dead at once, to be redriven once the cause is fixed.
AWS_FATAL_CODES = frozenset(
    {
        "InvalidParameter",
        "InvalidParameterValue",
        "ParameterValueInvalid",
        "ValidationError",
        "ValidationException",
        "OptedOut",
        "OptedOutException",
        "EndpointDisabled",
        "PlatformApplicationDisabled",
        "NotFound",
        "AuthorizationError",
        "AccessDenied",
        "AccessDeniedException",
        "InvalidSecurity",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "KMSAccessDenied",
        "KMSDisabled",
        "KMSInvalidState",
        "KMSNotFound",
        "KMSOptInRequired",
    }
)
# Throttling, service-side failures and credentials that the runtime will refresh.
AWS_RETRYABLE_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "Throttled",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "KMSThrottling",
        "InternalError",
        "InternalFailure",
        "InternalServerError",
        "ServiceUnavailable",
        "RequestTimeout",
        "RequestTimeoutException",
        "ExpiredToken",
        "ExpiredTokenException",
        "RequestExpired",
    }
)

# Retry-After beyond SQS's longest visibility timeout (12 h) cannot be honoured anyway.
MAX_RETRY_AFTER_SECONDS = 43_200.0
# Provider error texts end up in job records and dead letters: keep them short.
MAX_ERROR_TEXT = 300

_PHONE_LIKE = re.compile(r"\+?\d{7,15}")
_TELNYX_IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9_:-]{1,255}")
_PRINTABLE_TOKEN = re.compile(r"[\x21-\x7e]+")


@dataclass(frozen=True)
class SmsSendResult:
    """What a provider answered for an accepted message: its id, for support and receipts."""

    provider: str
    message_id: str


class SmsProvider(Protocol):
    """Sends one SMS; raises RetryableError / FatalError (``code`` names the provider's error)."""

    name: str

    def send(self, to: str, text: str, *, idempotency_key: str) -> SmsSendResult: ...


class SnsClient(Protocol):
    """The slice of a boto3 SNS client used here (boto3 clients are untyped)."""

    def publish(self, **kwargs: Any) -> Mapping[str, Any]: ...


class SsmClient(Protocol):
    """The slice of a boto3 SSM client used here."""

    def get_parameters(self, **kwargs: Any) -> Mapping[str, Any]: ...


def _scrub(text: str, *secrets: str) -> str:
    """Masks phone-like digit runs and any secret, then truncates: safe for logs and job records."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = _PHONE_LIKE.sub(lambda m: mask_phone(m.group(0)), text)
    if len(text) > MAX_ERROR_TEXT:
        text = text[: MAX_ERROR_TEXT - 3] + "..."
    return text


def _log_attempt(provider: str, to: str, text: str, idempotency_key: str) -> None:
    logger.info(
        "SMS send attempt",
        extra={
            "sms_provider": provider,
            "to": mask_phone(to),
            "text_length": len(text),
            "idempotency_key": idempotency_key,
        },
    )


def _log_sent(provider: str, to: str, message_id: str) -> None:
    logger.info(
        "SMS accepted by provider",
        extra={"sms_provider": provider, "to": mask_phone(to), "provider_message_id": message_id},
    )


def _log_failed(provider: str, to: str, error: RetryableError | FatalError) -> None:
    extra: dict[str, object] = {
        "sms_provider": provider,
        "to": mask_phone(to),
        "error_code": error.code,
        "error_message": error.message,
        "retryable": error.retryable,
    }
    if isinstance(error, RetryableError) and error.retry_after is not None:
        extra["retry_after"] = error.retry_after
    logger.warning("SMS send failed", extra=extra)


def _classify_aws_error(service: str, exc: Exception) -> RetryableError | FatalError:
    """Turns a botocore exception into the job error that says whether to retry.

    Known codes decide first; otherwise the HTTP status does (429 and 5xx retry, other 4xx are
    fatal); anything else unexpected is retried, as chalicelib.errors prescribes.
    """
    if isinstance(exc, ClientError):
        response = getattr(exc, "response", {}) or {}
        error = response.get("Error", {}) or {}
        code = str(error.get("Code") or "Unknown")
        message = _scrub(str(error.get("Message") or code))
        status = (response.get("ResponseMetadata", {}) or {}).get("HTTPStatusCode")
        job_code = f"{service}_{code}"
        text = f"{service.upper()} refused the request ({code}): {message}"
        if code in AWS_RETRYABLE_CODES:
            return RetryableError(job_code, text)
        if code in AWS_FATAL_CODES:
            return FatalError(job_code, text)
        if isinstance(status, int) and (status == 429 or status >= 500):
            return RetryableError(job_code, text)
        if isinstance(status, int) and 400 <= status < 500:
            return FatalError(job_code, text)
        return RetryableError(job_code, text)
    if isinstance(exc, (HTTPClientError, BotoConnectionError)):
        return RetryableError("network_error", f"{service.upper()} could not be reached: {_scrub(str(exc))}")
    if isinstance(exc, ParamValidationError):
        return FatalError(f"{service}_ParamValidation", _scrub(str(exc)))
    return RetryableError(f"{service}_{type(exc).__name__}", _scrub(str(exc)))


class SnsSmsProvider:
    """Sends through Amazon SNS Publish with a PhoneNumber (no topic): the default provider.

    SNS has no idempotency key for Publish, so a retry after a lost response may send twice;
    the key is still logged to tie attempts together.
    """

    name: str = "sns"

    def __init__(self, sns_client: SnsClient) -> None:
        self._sns = sns_client

    def __repr__(self) -> str:
        return "SnsSmsProvider()"

    def send(self, to: str, text: str, *, idempotency_key: str) -> SmsSendResult:
        _log_attempt(self.name, to, text, idempotency_key)
        try:
            response = self._sns.publish(
                PhoneNumber=to,
                Message=text,
                MessageAttributes={
                    # Transactional: SNS routes for reliability rather than cost, as alerts need.
                    "AWS.SNS.SMS.SMSType": {"DataType": "String", "StringValue": "Transactional"},
                },
            )
        except (ClientError, BotoCoreError) as exc:
            error = _classify_aws_error("sns", exc)
            _log_failed(self.name, to, error)
            # from None: SNS (and LocalStack) quote the raw number in their messages; the scrubbed
            # code and message above are all a worker needs.
            raise error from None
        message_id = str(response.get("MessageId") or "")
        if not message_id:
            error = RetryableError("sns_bad_response", "SNS accepted the request but returned no MessageId")
            _log_failed(self.name, to, error)
            raise error
        _log_sent(self.name, to, message_id)
        return SmsSendResult(provider=self.name, message_id=message_id)


def _retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as delta-seconds or an HTTP date (RFC 9110 10.2.3); None when unusable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def _telnyx_idempotency_key(key: str) -> str:
    """Telnyx accepts ^[A-Za-z0-9_:-]{1,255}$; anything else is hashed into that alphabet."""
    if _TELNYX_IDEMPOTENCY_KEY.fullmatch(key):
        return key
    return "sha256:" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


class TelnyxSmsProvider:
    """Sends through Telnyx's Messaging API (POST /v2/messages) with a bearer API key.

    Uses urllib3, which botocore already ships, so the Lambda package needs nothing new. The
    caller's idempotency key goes out as Telnyx's ``Idempotency-Key`` header, so a retry after a
    timeout replays the first success instead of texting twice. Build one per container and
    reuse it: the pool keeps the TLS connection to Telnyx alive between messages.
    """

    name: str = "telnyx"

    def __init__(
        self,
        api_key: str,
        messaging_profile_id: str | None,
        from_number: str,
        base_url: str = TELNYX_DEFAULT_BASE_URL,
        timeout: tuple[float, float] = TELNYX_DEFAULT_TIMEOUT,
        http: urllib3.PoolManager | None = None,
    ) -> None:
        # A key with whitespace or control characters would be echoed by http.client's
        # "Invalid header value" error: refuse it here, without quoting it.
        if not _PRINTABLE_TOKEN.fullmatch(api_key or ""):
            raise ValueError("The Telnyx API key is empty or holds whitespace or control characters.")
        if not base_url.startswith(("https://", "http://")):
            raise ValueError(f"The Telnyx base URL must be http(s)://, got {base_url!r}.")
        self._api_key = api_key
        self._messaging_profile_id = messaging_profile_id or None
        self._from_number = from_number
        self._url = base_url.rstrip("/") + "/v2/messages"
        self._timeout = urllib3.Timeout(connect=timeout[0], read=timeout[1])
        self._http = http if http is not None else urllib3.PoolManager(num_pools=2, maxsize=4)

    def __repr__(self) -> str:
        return (
            f"TelnyxSmsProvider(url={self._url!r}, from_number={mask_phone(self._from_number)!r}, "
            f"messaging_profile_id={self._messaging_profile_id!r}, api_key='***')"
        )

    def send(self, to: str, text: str, *, idempotency_key: str) -> SmsSendResult:
        _log_attempt(self.name, to, text, idempotency_key)
        try:
            result = self._send(to, text, idempotency_key)
        except (RetryableError, FatalError) as error:
            _log_failed(self.name, to, error)
            raise
        _log_sent(self.name, to, result.message_id)
        return result

    def _send(self, to: str, text: str, idempotency_key: str) -> SmsSendResult:
        payload: dict[str, str] = {"from": self._from_number, "to": to, "text": text}
        if self._messaging_profile_id:
            payload["messaging_profile_id"] = self._messaging_profile_id
        headers = {
            "Authorization": f"Bearer {self._api_key}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            "Idempotency-Key": _telnyx_idempotency_key(idempotency_key),
        }
        # "from None" throughout: the chained urllib3 exception is not needed to act on the
        # error, and dropping it guarantees no traceback can carry request details.
        try:
            response = self._http.request(
                "POST",
                self._url,
                body=json.dumps(payload).encode("utf-8"),
                headers=headers,
                timeout=self._timeout,
                retries=False,  # the job queue retries, with backoff and a cap on attempts
                redirect=False,
            )
        except urllib3.exceptions.NewConnectionError as exc:  # before TimeoutError: it subclasses it
            raise RetryableError("network_error", self._describe(exc, "Telnyx could not be reached")) from None
        except urllib3.exceptions.TimeoutError as exc:
            raise RetryableError("network_timeout", self._describe(exc, "Telnyx did not answer in time")) from None
        except urllib3.exceptions.HTTPError as exc:
            raise RetryableError("network_error", self._describe(exc, "Talking to Telnyx failed")) from None
        except Exception as exc:
            raise RetryableError("network_error", self._describe(exc, "Sending to Telnyx failed")) from None
        return self._read_response(response.status, response.data, response.headers.get("Retry-After"))

    def _describe(self, exc: BaseException, what: str) -> str:
        return f"{what}: {type(exc).__name__}: {_scrub(str(exc), self._api_key)}"

    def _read_response(self, status: int, data: bytes, retry_after: str | None) -> SmsSendResult:
        body: Any
        try:
            body = json.loads(data) if data else None
        except (ValueError, UnicodeDecodeError):
            body = None

        if 200 <= status < 300:
            data_part = body.get("data") if isinstance(body, dict) else None
            message_id = data_part.get("id") if isinstance(data_part, dict) else None
            if isinstance(message_id, str) and message_id:
                return SmsSendResult(provider=self.name, message_id=message_id)
            # Retrying is safe: with the same Idempotency-Key, Telnyx replays a real success.
            raise RetryableError("telnyx_bad_response", f"Telnyx answered {status} without a message id")

        errors = body.get("errors") if isinstance(body, dict) else None
        details = [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []
        codes = [str(e.get("code")) for e in details if e.get("code") is not None]
        first = details[0] if details else {}
        summary = " ".join(str(first.get(k)) for k in ("title", "detail") if first.get(k)) or "no details"
        message = f"Telnyx answered {status}: " + _scrub(summary, self._api_key)
        wait = _retry_after_seconds(retry_after)

        fatal = next((c for c in codes if c in TELNYX_FATAL_CODES), None)
        if fatal is not None:
            raise FatalError(f"telnyx_{fatal}", message)
        retryable = next((c for c in codes if c in TELNYX_RETRYABLE_CODES), None)
        if retryable is not None:
            raise RetryableError(f"telnyx_{retryable}", message, retry_after=wait)

        code = f"telnyx_{_safe_code(codes[0])}" if codes else f"telnyx_http_{status}"
        if status == 429 or status >= 500:
            raise RetryableError(code, message, retry_after=wait)
        if 400 <= status < 500:
            raise FatalError(code, message)
        # 1xx/3xx are not part of this API's contract: treat as a passing fault.
        raise RetryableError(code, message, retry_after=wait)


def _safe_code(code: str) -> str:
    """Keeps provider codes usable as a filter value (dead-letter error_code) and short."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", code)[:40]


@dataclass(frozen=True)
class TelnyxConfig:
    """Telnyx settings read from SSM; the repr leaves the API key out."""

    api_key: str = field(repr=False)
    from_number: str
    messaging_profile_id: str | None = None


_telnyx_cache: dict[str, TelnyxConfig | None] = {}
_telnyx_cache_lock = threading.Lock()


def _parameter_names(prefix: str) -> tuple[str, str, str]:
    base = prefix.rstrip("/") + "/telnyx/"
    return base + "api_key", base + "messaging_profile_id", base + "from_number"


def _read_telnyx_config(ssm_client: SsmClient, prefix: str) -> TelnyxConfig | None:
    key_name, profile_name, from_name = _parameter_names(prefix)
    try:
        response = ssm_client.get_parameters(Names=[key_name, profile_name, from_name], WithDecryption=True)
    except (ClientError, BotoCoreError) as exc:
        raise _classify_aws_error("ssm", exc) from exc
    values = {
        str(p.get("Name")): str(p.get("Value") or "").strip()
        for p in response.get("Parameters", [])
        if isinstance(p, Mapping)
    }
    api_key = values.get(key_name, "")
    if not api_key:
        return None
    from_number = values.get(from_name, "")
    if not from_number:
        # Falling back to SNS here would silently change the sender in production.
        raise FatalError(
            "telnyx_config_incomplete",
            f"{key_name} is set but {from_name} is missing: set it, or delete the API key to use SNS.",
        )
    return TelnyxConfig(
        api_key=api_key,
        from_number=from_number,
        messaging_profile_id=values.get(profile_name) or None,
    )


def _cached_telnyx_config(prefix: str, get_client: Callable[[], SsmClient]) -> TelnyxConfig | None:
    """Reads SSM once per container and prefix; errors are not cached, so the next job retries."""
    key = prefix.rstrip("/")
    with _telnyx_cache_lock:
        if key not in _telnyx_cache:
            _telnyx_cache[key] = _read_telnyx_config(get_client(), key)
        return _telnyx_cache[key]


def load_telnyx_config(ssm_client: SsmClient, prefix: str) -> TelnyxConfig | None:
    """Telnyx settings under ``{prefix}/telnyx/`` (one GetParameters call), or None if no API key.

    The result is cached per container: rotating the key takes a new container (a deploy or a
    config change), which is the usual trade for not paying SSM on every message.
    """
    return _cached_telnyx_config(prefix, lambda: ssm_client)


def reset_telnyx_config_cache() -> None:
    """Forgets every cached config: for tests, and for code that knows the parameters changed."""
    with _telnyx_cache_lock:
        _telnyx_cache.clear()


def build_sms_provider(
    sns_client_factory: Callable[[], SnsClient],
    ssm_client_factory: Callable[[], SsmClient],
    prefix: str,
    *,
    telnyx_base_url: str = TELNYX_DEFAULT_BASE_URL,
) -> SmsProvider:
    """Telnyx when its API key is configured in SSM, else SNS.

    The factories are called only when needed: the SSM client on the first call per container
    (the config is cached), the SNS client only when SNS is chosen.
    """
    config = _cached_telnyx_config(prefix, ssm_client_factory)
    if config is not None:
        return TelnyxSmsProvider(
            api_key=config.api_key,
            messaging_profile_id=config.messaging_profile_id,
            from_number=config.from_number,
            base_url=telnyx_base_url,
        )
    return SnsSmsProvider(sns_client_factory())
