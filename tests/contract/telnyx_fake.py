"""A local stand-in for Telnyx's Messaging API (POST /v2/messages), for contract tests.

It answers the way Telnyx does (https://developers.telnyx.com/docs/messaging): bearer-key auth
(401 + code 10009 on a wrong key), E.164 checks on ``to`` (422 + code 40310), a success body whose
``data.id`` is the message id, and ``{"errors": [{"code", "title", "detail"}]}`` on failure. A
test can queue scripted answers (any status, body, headers, a delay, a dropped connection) that
are served in order before the default behaviour resumes. Every request is recorded.

Threaded http.server on 127.0.0.1 with an ephemeral port: no network beyond loopback.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

E164 = re.compile(r"\+[1-9]\d{1,14}", re.ASCII)

# Titles and typical HTTP statuses of the codes the adapter must classify.
ERROR_CATALOG: dict[str, tuple[int, str, str]] = {
    "10009": (401, "Authentication failed", "The required authentication headers were invalid."),
    "10011": (429, "Too many requests", "You have exceeded the maximum number of allowed requests."),
    "10016": (422, "Phone number must be in +E.164 format", "The 'from' number is not in +E.164 format."),
    "40001": (422, "Not routable", "The destination number is a landline or is not routable."),
    "40300": (403, "Blocked due to STOP message", "The recipient replied STOP to this sender."),
    "40310": (422, "Invalid 'to' address", "The 'to' address should be in E.164 format."),
    "40311": (422, "Invalid 'to' address", "The 'to' address is not SMS-capable."),
    "40400": (404, "Temporarily unreachable", "The destination is temporarily unreachable."),
    "50000": (500, "Internal error", "An unexpected error occurred."),
    "50001": (503, "Service unavailable", "The service is temporarily unavailable."),
}


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Answer:
    """One scripted answer. ``drop`` closes the connection without answering."""

    status: int = 200
    body: Any = None  # dict/list -> JSON, bytes/str -> sent as is, None -> empty
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drop: bool = False


def error_answer(code: str, *, status: int | None = None, detail: str | None = None, **headers: str) -> Answer:
    """Telnyx's error body for ``code``; ``headers`` e.g. Retry_After="3" (underscores -> dashes)."""
    default_status, title, default_detail = ERROR_CATALOG.get(code, (400, "Error", "Request failed."))
    body = {
        "errors": [
            {
                "code": code,
                "title": title,
                "detail": detail if detail is not None else default_detail,
                "meta": {"url": f"https://developers.telnyx.com/docs/overview/errors/{code}"},
            }
        ]
    }
    return Answer(
        status=status or default_status,
        body=body,
        headers={k.replace("_", "-"): v for k, v in headers.items()},
    )


class TelnyxFake:
    """Start with ``with TelnyxFake(api_key=...) as fake:``; point the adapter at ``fake.base_url``."""

    def __init__(self, api_key: str) -> None:
        self.api_key = api_key
        self.requests: list[RecordedRequest] = []
        self.sent_ids: list[str] = []
        self._accepted: list[bool] = []  # parallel to requests: did Telnyx accept it?
        self._script: deque[Answer] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="telnyx-fake", daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()  # wakes handlers sleeping on a scripted delay
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def answer(self, *answers: Answer) -> None:
        """Serve these, in order, to the next requests; then back to Telnyx's own behaviour."""
        with self._lock:
            self._script.extend(answers)

    def messages(self) -> list[tuple[str, str]]:
        """(to, text) of every request that Telnyx would have accepted."""
        with self._lock:
            return [(r.json["to"], r.json["text"]) for r, ok in zip(self.requests, self._accepted, strict=True) if ok]

    # -- internals -------------------------------------------------------------------------------

    def _next(self, request: RecordedRequest) -> Answer:
        with self._lock:
            self.requests.append(request)
            if self._script:
                self._accepted.append(False)
                return self._script.popleft()
            answer = self._default(request)
            self._accepted.append(answer.status == 200)
            return answer

    def _default(self, request: RecordedRequest) -> Answer:
        if request.method != "POST" or request.path != "/v2/messages":
            return Answer(404, {"errors": [{"code": "10005", "title": "Resource not found"}]})
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return error_answer("10009")
        try:
            payload = request.json
        except ValueError:
            return error_answer("10015", status=400, detail="The request body is not valid JSON.")
        if not isinstance(payload, dict) or not payload.get("text"):
            return error_answer("10004", status=422, detail="Missing required parameter 'text'.")
        to = payload.get("to")
        if not isinstance(to, str) or not E164.fullmatch(to):
            return error_answer("40310")
        message_id = str(uuid.uuid4())
        self.sent_ids.append(message_id)
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return Answer(
            200,
            {
                "data": {
                    "record_type": "message",
                    "direction": "outbound",
                    "id": message_id,
                    "type": "SMS",
                    "messaging_profile_id": payload.get("messaging_profile_id"),
                    "from": {
                        "phone_number": payload.get("from"),
                        "carrier": "Telnyx",
                        "line_type": "Wireless",
                    },
                    "to": [{"phone_number": to, "status": "queued", "carrier": "", "line_type": ""}],
                    "text": payload["text"],
                    "media": [],
                    "encoding": "GSM-7",
                    "parts": 1,
                    "tags": [],
                    "received_at": now,
                    "errors": [],
                }
            },
        )

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self._serve()

            def do_GET(self) -> None:
                self._serve()

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                request = RecordedRequest(
                    method=self.command,
                    path=self.path,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
                answer = fake._next(request)
                if answer.delay and fake._stopping.wait(answer.delay):
                    return
                if answer.drop:
                    self.close_connection = True
                    return
                if isinstance(answer.body, (dict, list)):
                    data = json.dumps(answer.body).encode()
                    content_type = "application/json"
                elif isinstance(answer.body, str):
                    data, content_type = answer.body.encode(), "text/html"
                else:
                    data, content_type = answer.body or b"", "application/octet-stream"
                try:
                    self.send_response(answer.status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(data)))
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client gave up (timeout test): nothing to answer
                    self.close_connection = True

            def log_message(self, format: str, *args: Any) -> None:
                """Silent: the adapter's own logs are what the tests inspect."""

        return Handler
