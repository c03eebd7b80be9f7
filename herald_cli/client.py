"""A small JSON client for the Herald API over an injectable transport.

The default transport is urllib; tests pass a fake one, so no socket is ever opened.
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from herald_cli import __version__

USER_AGENT = f"herald-cli/{__version__}"


@dataclass(frozen=True)
class HttpResponse:
    status: int
    body: bytes


class Transport(Protocol):
    """Sends one HTTP request; raises ``TransportError`` when the server cannot be reached."""

    def __call__(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None,
        timeout: float,
    ) -> HttpResponse: ...


class TransportError(Exception):
    """The API could not be reached (refused, DNS, timeout, broken connection)."""


class NoTokenError(Exception):
    """A route needs a token and none was configured."""


@dataclass
class ApiError(Exception):
    """The API answered with a 4xx/5xx, or with something that is not the JSON it promised."""

    status: int
    code: str
    message: str
    details: list[Any] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.message} ({self.code})"


class UrllibTransport:
    """The real transport: ``urllib.request`` with a timeout."""

    def __call__(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None,
        timeout: float,
    ) -> HttpResponse:
        request = urllib.request.Request(url, data=body, method=method, headers=dict(headers))
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return HttpResponse(status=response.status, body=response.read())
        except urllib.error.HTTPError as exc:
            with exc:
                return HttpResponse(status=exc.code, body=exc.read() or b"")
        except urllib.error.URLError as exc:
            raise TransportError(str(exc.reason)) from exc
        except (OSError, http.client.HTTPException) as exc:
            raise TransportError(str(exc) or type(exc).__name__) from exc


class ApiClient:
    def __init__(
        self,
        base_url: str,
        token: str | None,
        transport: Transport,
        timeout: float = 30.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.transport = transport
        self.timeout = timeout

    def url(self, path: str, query: Mapping[str, object | None] | None = None) -> str:
        url = self.base_url + path
        params = {
            k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in (query or {}).items() if v is not None
        }
        if params:
            url += "?" + urllib.parse.urlencode(params)
        return url

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, object | None] | None = None,
        body: object | None = None,
        auth: bool = True,
        accept_statuses: tuple[int, ...] = (),
    ) -> Any:
        """Call the API and return its decoded JSON (``None`` for an empty body)."""
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if auth:
            if not self.token:
                raise NoTokenError(
                    "no token: pass --token or --org, set HERALD_TOKEN, or run inside a "
                    "project whose .herald/stack.json holds an operator_token"
                )
            headers["Authorization"] = f"Bearer {self.token}"
        data: bytes | None = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        response = self.transport(method, self.url(path, query), headers, data, self.timeout)
        decoded, parsed = _decode(response.body)
        if response.status >= 400 and response.status not in accept_statuses:
            raise _error_from(response.status, decoded if parsed else None, response.body)
        if not parsed:
            raise ApiError(
                response.status,
                "bad_response",
                "the API answered with a body that is not JSON",
            )
        return decoded

    def get(self, path: str, **query: object | None) -> Any:
        return self.request("GET", path, query=query)

    def post(self, path: str, body: object) -> Any:
        return self.request("POST", path, body=body)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)


def quote(segment: str) -> str:
    """One path segment, fully escaped (job ids may hold ``:`` or ``/``)."""
    return urllib.parse.quote(segment, safe="")


def _decode(body: bytes) -> tuple[Any, bool]:
    if not body.strip():
        return None, True
    try:
        return json.loads(body.decode("utf-8")), True
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None, False


def _error_from(status: int, payload: Any, raw: bytes) -> ApiError:
    if isinstance(payload, dict):
        error = payload.get("error")
        if isinstance(error, dict) and error.get("message"):
            details = error.get("details")
            return ApiError(
                status=status,
                code=str(error.get("code") or f"http_{status}"),
                message=str(error["message"]),
                details=details if isinstance(details, list) else [],
            )
        # API Gateway's own answers: {"message": "..."} / {"Message": "..."}
        for key in ("message", "Message"):
            if isinstance(payload.get(key), str):
                return ApiError(status, f"http_{status}", payload[key])
    text = raw.decode("utf-8", "replace").strip()
    reason = http.client.responses.get(status, "error")
    message = f"HTTP {status} {reason}" + (f": {text[:200]}" if text and len(text) < 200 else "")
    return ApiError(status, f"http_{status}", message)
