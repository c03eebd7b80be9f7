"""Webhook delivery, signed the Standard Webhooks way (https://www.standardwebhooks.com).

Receivers verify our deliveries with the spec's reference libraries, so signing follows the spec
exactly: ``webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`` where the
key is the base64 part of the organization's ``whsec_...`` secret and ``body`` is the very bytes we
send. ``webhook-id`` stays the same across retries of one job (pass the job id): that is what lets
receivers de-duplicate our at-least-once deliveries.

Outcome rules (the API contract): 2xx is success; 4xx other than 408/429 is fatal; 408, 429, 5xx,
timeouts and connection errors are retried, honouring ``Retry-After`` on 429/503.

Redirects are **not followed**: a 3xx is FatalError("http_3xx_redirect"). A redirect is chosen by
the receiver after our SSRF check, so following it could land the signed POST on a private address
(or the metadata service) or on a host the organization never configured; re-POSTing to a new
location is also ambiguous (301/302 turn into GET in most clients). The fix belongs to the
customer: configure the final URL. Retrying cannot help, hence fatal rather than retryable.

Only the stdlib is used (http.client, ssl): the Lambda package carries no HTTP library.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from http.client import HTTPConnection, HTTPException
from typing import Self

from chalicelib import netguard
from chalicelib.errors import FatalError, RetryableError
from chalicelib.observability import logger

SECRET_PREFIX = "whsec_"
DEFAULT_TOLERANCE_SECONDS = 300
# SQS cannot hide a message longer than 12 hours; a larger Retry-After is clamped to that.
MAX_RETRY_AFTER_SECONDS = 12 * 3600

# Headers the caller may not set: the signature headers (forging them would break verification),
# framing and hop-by-hop headers (we compute them; a wrong Content-Length smuggles requests), and
# Host/Content-Type (fixed by the URL and by the JSON body we sign).
RESERVED_HEADERS = frozenset(
    {
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "host",
        "content-length",
        "content-type",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "expect",
    }
)
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_SNIPPET_CHARS = 200


class SignatureError(Exception):
    """A delivery's signature headers are missing, stale or do not match (receiver side)."""


def generate_secret() -> str:
    """A new organization secret: ``whsec_`` + base64 of 32 random bytes (the spec's form)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def _secret_key(secret: str) -> bytes:
    """The HMAC key inside a ``whsec_`` secret; ValueError when the secret is malformed."""
    if not isinstance(secret, str) or not secret.startswith(SECRET_PREFIX):
        raise ValueError("a webhook secret must look like 'whsec_<base64>'")
    encoded = secret[len(SECRET_PREFIX) :]
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except ValueError as exc:
        raise ValueError("a webhook secret must look like 'whsec_<base64>'") from exc
    if not key:
        raise ValueError("a webhook secret may not be empty")
    return key


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256(key, f"{msg_id}.{timestamp}.{body}")>`` over the exact body bytes."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
    *,
    now: float | None = None,
) -> None:
    """Check a delivery as a receiver would; raise SignatureError if it does not verify.

    Header names are matched case-insensitively. ``webhook-signature`` may hold several
    space-separated signatures (the spec allows it, e.g. during a secret rotation); one matching
    ``v1`` signature is enough. A timestamp more than ``tolerance`` seconds away from now is refused
    to stop replays.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    msg_id = lowered.get("webhook-id")
    raw_timestamp = lowered.get("webhook-timestamp")
    signatures = lowered.get("webhook-signature")
    if not (msg_id and raw_timestamp and signatures):
        raise SignatureError("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        timestamp = int(raw_timestamp)
    except ValueError as exc:
        raise SignatureError("webhook-timestamp is not an integer") from exc
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise SignatureError("webhook-timestamp is outside the tolerance")
    expected = sign(secret, msg_id, timestamp, body).encode("ascii")
    for candidate in signatures.split():
        if candidate.startswith("v1,") and hmac.compare_digest(candidate.encode("ascii", "replace"), expected):
            return
    raise SignatureError("no matching v1 signature")


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delay-seconds or HTTP-date), clamped to 0..12 h.

    ``None`` when absent or unparseable: the worker's own backoff then applies.
    """
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(min(int(value), MAX_RETRY_AFTER_SECONDS))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # an HTTP-date is GMT by definition
        return None
    delay = when.timestamp() - (time.time() if now is None else now)
    return float(min(max(delay, 0.0), MAX_RETRY_AFTER_SECONDS))


def encode_body(body: object) -> bytes:
    """The compact JSON bytes we sign and send; FatalError when ``body`` is not JSON."""
    try:
        return json.dumps(body, separators=(",", ":"), allow_nan=False).encode("utf-8")
    except (TypeError, ValueError, RecursionError) as exc:
        raise FatalError("invalid_webhook_body", f"The webhook body is not JSON-serialisable: {exc}.") from exc


def _caller_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    """The caller's headers minus reserved ones; FatalError on names/values HTTP cannot carry."""
    kept: dict[str, str] = {}
    for name, value in (headers or {}).items():
        if not isinstance(name, str) or not _HEADER_NAME.match(name):
            raise FatalError("invalid_webhook_headers", f"{name!r} is not a valid HTTP header name.")
        if not isinstance(value, str) or any(c in value for c in "\r\n\0"):
            raise FatalError("invalid_webhook_headers", f"The value of header {name!r} is not valid.")
        if name.lower() in RESERVED_HEADERS:
            logger.debug("dropping reserved webhook header", extra={"header": name})
            continue
        kept[name] = value
    return kept


class _Watchdog:
    """Enforces a total deadline on one request/response exchange.

    Socket timeouts bound each read, not the whole exchange: a receiver dripping one byte every few
    seconds would hold the worker until the Lambda times out. When the deadline passes we shut the
    socket down under the reader, which then fails at once; ``fired`` tells that apart from a
    receiver that closed the connection itself.
    """

    def __init__(self, sock: socket.socket, seconds: float) -> None:
        self.fired = False
        self._sock = sock
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def _fire(self) -> None:
        self.fired = True
        try:
            # socket.socket.shutdown, not SSLSocket.shutdown: cut the TCP stream without touching
            # the TLS state another thread is using.
            socket.socket.shutdown(self._sock, socket.SHUT_RDWR)
        except OSError:
            pass

    def __enter__(self) -> Self:
        self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._timer.cancel()


class WebhookDeliverer:
    """POSTs signed JSON to tenant URLs, guarded against SSRF, and classifies the outcome.

    ``connect_timeout`` bounds each TCP (and TLS) connect; ``read_timeout`` bounds the whole exchange
    after connecting (sending the request and receiving the status and headers), so one delivery
    takes at most about connect_timeout * addresses + read_timeout. At most ``max_response_bytes`` of
    the response body are read: we only keep a short snippet for error messages.
    """

    def __init__(
        self,
        allow_private: bool,
        connect_timeout: float = 3.0,
        read_timeout: float = 10.0,
        max_response_bytes: int = 64 * 1024,
        user_agent: str = "Herald-Webhooks/1",
        *,
        resolver: netguard.Resolver = netguard.system_resolver,
        ssl_context: ssl.SSLContext | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.allow_private = allow_private
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_response_bytes = max_response_bytes
        self.user_agent = user_agent
        self._resolver = resolver
        self._ssl_context = ssl_context
        self._clock = clock

    def _context(self) -> ssl.SSLContext:
        # Built on first https use, not at import or construction: loading the CA bundle costs
        # cold-start time that http-only stages never need.
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context()
        return self._ssl_context

    def deliver(
        self,
        url: str,
        body: object,
        headers: Mapping[str, str] | None = None,
        *,
        msg_id: str,
        secret: str,
    ) -> dict[str, int]:
        """Deliver once; return ``{"status_code", "response_ms"}`` on 2xx, else raise.

        Raises FatalError (``webhook_target_forbidden``, ``http_4xx``, ``http_3xx_redirect``,
        ``invalid_webhook_*``) or RetryableError (``http_408``, ``http_429``, ``http_5xx``,
        ``timeout``, ``connection_error``, ``tls_error``, ``protocol_error``, ``dns_error``).
        """
        if not isinstance(msg_id, str) or not msg_id:
            raise FatalError("invalid_webhook_id", "A webhook needs a non-empty message id.")
        payload = encode_body(body)
        extra = _caller_headers(headers)
        try:
            _secret_key(secret)
        except ValueError as exc:
            raise FatalError(
                "invalid_webhook_secret", f"The organization's webhook secret is unusable: {exc}."
            ) from exc
        target = netguard.vet_url(url, self.allow_private, self._resolver)
        timestamp = int(self._clock())

        request_headers = {"Host": target.host_header}
        if not any(name.lower() == "user-agent" for name in extra):
            request_headers["User-Agent"] = self.user_agent
        request_headers.update(extra)
        request_headers["Content-Type"] = "application/json"
        request_headers["webhook-id"] = msg_id
        request_headers["webhook-timestamp"] = str(timestamp)
        request_headers["webhook-signature"] = sign(secret, msg_id, timestamp, payload)

        started = time.monotonic()
        log_extra: dict[str, object] = {"webhook_host": target.host, "webhook_id": msg_id}
        try:
            status, response_headers, snippet = self._exchange(target, payload, request_headers)
        except RetryableError as exc:
            log_extra.update(error_code=exc.code, response_ms=_ms_since(started))
            logger.warning("webhook delivery failed", extra=log_extra)
            raise
        response_ms = _ms_since(started)
        log_extra.update(status_code=status, response_ms=response_ms)

        if 200 <= status < 300:
            logger.info("webhook delivered", extra=log_extra)
            return {"status_code": status, "response_ms": response_ms}

        detail = f"The webhook endpoint answered HTTP {status}"
        if snippet:
            detail += f": {snippet}"
        logger.warning("webhook delivery refused", extra=log_extra)
        if 300 <= status < 400:
            location = response_headers.get("location", "")
            raise FatalError(
                "http_3xx_redirect",
                f"The webhook endpoint answered HTTP {status} (redirect to {location[:200]!r}); "
                "redirects are not followed: configure the final URL.",
            )
        if 400 <= status < 500 and status not in (408, 429):
            raise FatalError(f"http_{status}", detail + ".")
        retry_after = None
        if status in (429, 503):
            retry_after = parse_retry_after(response_headers.get("retry-after"), now=self._clock())
        raise RetryableError(f"http_{status}", detail + ".", retry_after=retry_after)

    def _exchange(
        self, target: netguard.Target, payload: bytes, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], str]:
        """Send the request to the first vetted address that accepts a connection."""
        conn = self._connect(target)
        try:
            assert conn.sock is not None
            conn.sock.settimeout(self.read_timeout)
            with _Watchdog(conn.sock, self.read_timeout) as watchdog:
                try:
                    conn.request("POST", target.path, body=payload, headers=headers)
                    response = conn.getresponse()
                except Exception as exc:
                    if watchdog.fired:
                        raise RetryableError(
                            "timeout",
                            f"No response from the webhook endpoint within {self.read_timeout:g} s.",
                        ) from exc
                    raise _classify_network_error(exc, "while waiting for the response") from exc
                status = response.status
                response_headers = {k.lower(): v for k, v in response.getheaders()}
                try:
                    # The status is already decided; the body is only for error messages, so a
                    # body that stalls or breaks off does not change the outcome.
                    raw = response.read(self.max_response_bytes)
                except (OSError, HTTPException):
                    raw = b""
            snippet = raw[: _SNIPPET_CHARS * 4].decode("utf-8", "replace")[:_SNIPPET_CHARS]
            return status, response_headers, " ".join(snippet.split())
        finally:
            conn.close()

    def _connect(self, target: netguard.Target) -> HTTPConnection:
        last: Exception | None = None
        for address in target.addresses:
            conn = netguard.pinned_connection(
                target,
                address,
                timeout=self.connect_timeout,
                ssl_context=self._context() if target.scheme == "https" else None,
            )
            try:
                conn.connect()
                return conn
            except OSError as exc:
                conn.close()
                last = exc
        assert last is not None  # vet_url never returns a target without addresses
        raise _classify_network_error(last, "while connecting")


def _classify_network_error(exc: BaseException, when: str) -> RetryableError:
    """Every network failure is worth retrying; the code says which kind it was."""
    if isinstance(exc, RetryableError):
        return exc
    if isinstance(exc, TimeoutError):
        return RetryableError("timeout", f"The webhook endpoint timed out {when}.")
    if isinstance(exc, ssl.SSLError):
        # A broken certificate is usually fixed by the customer without changing the job: retry.
        return RetryableError("tls_error", f"TLS failed {when}: {exc}.")
    if isinstance(exc, OSError):
        return RetryableError("connection_error", f"Connection to the webhook endpoint failed {when}: {exc}.")
    if isinstance(exc, HTTPException):
        return RetryableError("protocol_error", f"The webhook endpoint sent an invalid response: {exc!r}.")
    return RetryableError("connection_error", f"Webhook delivery failed {when}: {exc!r}.")


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
