"""What app.py calls: run a route function with auth and the contract's errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from chalice.app import Request, Response

from chalicelib.api import health
from chalicelib.api.http import Route, handle, json_response
from chalicelib.auth import Principal
from chalicelib.observability import logger, metrics
from chalicelib.services import services

_STATIC = Path(__file__).resolve().parent.parent


def _authenticate(token: str) -> Principal | None:
    return services().tokens.resolve(token)


def _limit(principal: Principal) -> float | None:
    """The per-organization API rate limit (chalicelib/api/ratelimit.py): seconds to wait, or None."""
    return services().rate_limiter(principal)


def serve(request: Request, route: Route, role: str = "member") -> Response:
    return handle(request, route, role=role, authenticate=_authenticate, limiter=_limit)


def health_response() -> Response:
    status, body = health.check(services())
    return json_response(status, body)


def static_response(name: str, content_type: str) -> Response:
    body = (_STATIC / name).read_text()
    return Response(body=body, status_code=200, headers={"Content-Type": content_type, "Cache-Control": "no-store"})


def worker_batch(event: Any, priority: str) -> dict[str, Any]:
    """An SQS worker invocation; Chalice hands us its SQSEvent (raw dict + Lambda context)."""
    context = event.context
    logger.append_keys(queue=priority, request_id=getattr(context, "aws_request_id", None))
    try:
        return services().worker.handle_batch(event.to_dict(), context, priority)
    finally:
        metrics.flush_metrics()


def openapi_response() -> Response:
    doc = json.loads((_STATIC / "openapi.json").read_text())
    return json_response(200, doc)
