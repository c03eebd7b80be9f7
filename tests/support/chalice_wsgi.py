"""The Chalice app as a WSGI application, so Schemathesis can call it in-process.

It goes through Chalice's own local gateway (route matching, content types, the app's error
handling); like API Gateway's REST APIs, it hands path parameters over still percent-encoded.
A path that matches no route answers the contract's 404, as the deployed stack does.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from chalice import Chalice
from chalice.config import Config
from chalice.local import LocalGateway, LocalGatewayException

NO_ROUTE = json.dumps({"error": {"code": "not_found", "message": "No such route."}}).encode()
Wsgi = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _target(environ: dict[str, Any]) -> str:
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw:
        parts = urlsplit(raw)
        return parts.path + (f"?{parts.query}" if parts.query else "")
    query = environ.get("QUERY_STRING")
    return environ.get("PATH_INFO", "/") + (f"?{query}" if query else "")


def wsgi_app(app: Chalice, stage: str = "local") -> Wsgi:
    gateway = LocalGateway(app, Config.create(chalice_stage=stage, chalice_app=app))

    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        headers = {
            key[5:].replace("_", "-").lower(): value for key, value in environ.items() if key.startswith("HTTP_")
        }
        if environ.get("CONTENT_TYPE"):
            headers["content-type"] = environ["CONTENT_TYPE"]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        try:
            response = gateway.handle_request(environ["REQUEST_METHOD"], _target(environ), headers, body)
            status, out_headers, raw = response["statusCode"], dict(response.get("headers") or {}), response.get("body")
            if response.get("isBase64Encoded"):
                raw = base64.b64decode(raw)
        except LocalGatewayException as err:
            status, out_headers, raw = err.CODE, dict(err.headers or {}), err.body
            if b"Missing Authentication Token" in (raw or b"") or b"Authorization header requires" in (raw or b""):
                status, out_headers, raw = 404, {"Content-Type": "application/json"}, NO_ROUTE
        payload = raw.encode() if isinstance(raw, str) else (raw or b"")
        start_response(f"{status} {'OK' if status < 400 else 'Error'}", list(out_headers.items()))
        return [payload]

    return application
