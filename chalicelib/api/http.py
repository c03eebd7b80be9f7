"""The HTTP plumbing every route shares: auth, JSON in and out, the contract's error body.

Routes are plain functions `(request: Request) -> (status, body)`; `handle` authenticates,
parses, catches and answers, so a route never builds an error response by hand and an
unexpected exception is a logged 500 with the contract's body, never Chalice's own.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as AwsConnectionError
from chalice.app import Request, Response

from chalicelib.auth import Principal
from chalicelib.errors import ApiError, FieldProblem
from chalicelib.observability import logger

MAX_BODY_BYTES = 256 * 1024
JSON = {"Content-Type": "application/json"}


@dataclass
class Call:
    """What a route gets: the caller, the parsed body, path and query parameters."""

    principal: Principal
    body: Any
    params: dict[str, str]
    query: dict[str, str]

    def org_scope(self) -> str:
        """The organization this call acts on: the caller's own, or, for the operator, `org_id`."""
        if self.principal.org_id is not None:
            return self.principal.org_id
        org = self.query.get("org_id") or (self.body.get("org_id") if isinstance(self.body, dict) else None)
        if not isinstance(org, str) or not org:
            raise ApiError(
                400,
                "org_required",
                "The operator must name the organization: pass org_id.",
                [FieldProblem("org_id", "is required for the operator token")],
            )
        return org


Route = Callable[[Call], tuple[int, Any]]


def error_response(err: ApiError) -> Response:
    return Response(body=json.dumps(err.body()), status_code=err.status, headers={**JSON, **err.headers})


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(
        body=json.dumps(body, separators=(",", ":")), status_code=status, headers={**JSON, **(headers or {})}
    )


def parse_body(request: Request) -> Any:
    raw = request.raw_body if request.method in ("POST", "PUT", "PATCH") else b""
    if not raw:
        return {}
    if len(raw) > MAX_BODY_BYTES:
        raise ApiError(413, "payload_too_large", f"The request body is over {MAX_BODY_BYTES // 1024} KiB.")
    try:
        return json.loads(raw, parse_constant=_not_json, parse_float=_finite)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "malformed_json", "The request body is not valid JSON.") from None
    except RecursionError:  # deep nesting ([[[[...) exhausts the decoder's stack, well under 256 KiB
        raise ApiError(400, "malformed_json", "The request body is nested too deeply.") from None


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # Python's json accepts NaN and Infinity; JSON does not


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError("number out of range")  # 1e999 would be stored, and sent on, as Infinity
    return value


def bearer_token(request: Request) -> str | None:
    headers: Any = request.headers or {}
    header = str(headers.get("authorization") or "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def handle(
    request: Request,
    route: Route,
    *,
    role: str,
    authenticate: Callable[[str], Principal | None],
    limiter: Callable[[Principal], float | None] | None = None,
) -> Response:
    try:
        token = bearer_token(request)
        principal = authenticate(token) if token else None
        if principal is None:
            raise ApiError(
                401,
                "unauthorized",
                "A valid bearer token is required.",
                headers={"WWW-Authenticate": 'Bearer realm="herald"'},
            )
        if not principal.at_least(role):
            raise ApiError(403, "forbidden", f"This action needs the {role} role.")
        if limiter is not None:
            wait = limiter(principal)
            if wait is not None:
                raise ApiError(
                    429,
                    "rate_limited",
                    "Too many requests for this organization; slow down.",
                    headers={"Retry-After": str(max(1, int(wait + 0.999)))},
                )
        call = Call(
            principal=principal,
            body=parse_body(request),
            params=dict(request.uri_params or {}),
            query=dict(request.query_params or {}),
        )
        status, body = route(call)
        return json_response(status, body)
    except ApiError as err:
        return error_response(err)
    except Exception as err:
        if unavailable(err):
            logger.warning("a dependency is unavailable", extra={"error": type(err).__name__})
            return error_response(
                ApiError(
                    503,
                    "service_unavailable",
                    "A service Herald relies on is unavailable; retry shortly.",
                    headers={"Retry-After": "1"},
                )
            )
        logger.exception("unhandled error in route")
        return error_response(ApiError(500, "internal_error", "Something went wrong on our side; it was logged."))


# AWS error codes that mean "not now" (throttled, or the service is having trouble).
_NOT_NOW = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "RequestThrottled",
        "RequestLimitExceeded",
        "ProvisionedThroughputExceededException",
        "ServiceUnavailable",
        "InternalServerError",
        "InternalFailure",
    }
)


def unavailable(err: Exception) -> bool:
    """A dependency that cannot be reached or asks us to back off: the client's 503, not a bug's 500."""
    if isinstance(err, AwsConnectionError | HTTPClientError):
        return True
    return isinstance(err, ClientError) and err.response.get("Error", {}).get("Code") in _NOT_NOW
