"""A scriptable local HTTP(S) server that plays a customer's webhook endpoint in tests.

Used by the webhook contract tests and later by integration tests (bind ``host="0.0.0.0"`` there
if the sender runs elsewhere). Each request is recorded before its scripted reply is sent, so a
test can assert on what arrived even when the reply is delayed past the client's timeout.

    receiver = WebhookReceiver(secret=secret).start()
    receiver.script(Reply(503, {"Retry-After": "7"}), Reply(200))
    ... deliver to receiver.url ...
    [request] = receiver.wait_for(1)
    assert request.signature_ok
    receiver.stop()
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from chalicelib.providers.webhook import SignatureError, verify


@dataclass(frozen=True)
class Reply:
    """One scripted answer: wait ``delay`` seconds, then answer ``status`` with headers and body."""

    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay: float = 0.0


@dataclass(frozen=True)
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes
    received_at: float
    signature_ok: bool | None  # None when the receiver has no secret
    signature_error: str | None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    receiver: WebhookReceiver

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # failed TLS handshakes and clients that hang up are expected in these tests


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        reply = self.server.receiver._record_and_next(self, body)
        if reply.delay and self.server.receiver._stopping.wait(reply.delay):
            return  # stopped while sleeping: just drop the connection
        try:
            self.send_response(reply.status)
            headers = {k.lower(): v for k, v in reply.headers.items()}
            for name, value in reply.headers.items():
                self.send_header(name, value)
            if "content-length" not in headers:
                self.send_header("Content-Length", str(len(reply.body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(reply.body)
        except OSError:
            pass  # the client gave up (timeout test): nothing to answer
        self.close_connection = True

    do_POST = _handle
    do_PUT = _handle
    do_GET = _handle


class WebhookReceiver:
    """Start/stop a local endpoint; script its replies; read what it received (thread-safe).

    Replies are consumed in order; once the script is exhausted ``default`` is used (200).
    With ``secret`` set, every request's Standard Webhooks signature is checked and the result
    stored on the record (the receiver still answers the scripted reply either way).
    With ``ssl_context`` (a server context holding a certificate) it speaks https.
    """

    def __init__(
        self,
        secret: str | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        default: Reply | None = None,
        ssl_context: ssl.SSLContext | None = None,
        path: str = "/hook",
    ) -> None:
        self.secret = secret
        self.default = default or Reply(200, {"Content-Type": "application/json"}, b'{"ok":true}')
        self._host = host
        self._port = port
        self._ssl_context = ssl_context
        self._path = path
        self._lock = threading.Lock()
        self._script: list[Reply] = []
        self._requests: list[ReceivedRequest] = []
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # lifecycle -------------------------------------------------------------------------------
    def start(self) -> Self:
        server = _Server((self._host, self._port), _Handler)
        server.receiver = self
        if self._ssl_context is not None:
            # Handshake in the handler thread, not in accept(): a client that never completes
            # the handshake must not block the whole server.
            server.socket = self._ssl_context.wrap_socket(
                server.socket, server_side=True, do_handshake_on_connect=False
            )
        self._server = server
        self._stopping.clear()
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the receiver is not running")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """The endpoint URL (``http(s)://<host>:<port>/hook``)."""
        scheme = "https" if self._ssl_context is not None else "http"
        host = "127.0.0.1" if self._host in ("0.0.0.0", "") else self._host
        return f"{scheme}://{host}:{self.port}{self._path}"

    # scripting and inspection ----------------------------------------------------------------
    def script(self, *replies: Reply) -> None:
        """Append replies to answer the next requests with, in order."""
        with self._lock:
            self._script.extend(replies)

    @property
    def requests(self) -> list[ReceivedRequest]:
        with self._lock:
            return list(self._requests)

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()
            self._script.clear()

    def wait_for(self, count: int, timeout: float = 5.0) -> list[ReceivedRequest]:
        """Poll until at least ``count`` requests arrived (deadline, not a fixed sleep)."""
        deadline = time.monotonic() + timeout
        while True:
            received = self.requests
            if len(received) >= count:
                return received
            if time.monotonic() >= deadline:
                raise AssertionError(f"expected {count} request(s) within {timeout} s, got {len(received)}")
            time.sleep(0.01)

    def _record_and_next(self, handler: BaseHTTPRequestHandler, body: bytes) -> Reply:
        headers = {k.lower(): v for k, v in handler.headers.items()}
        ok: bool | None = None
        error: str | None = None
        if self.secret is not None:
            try:
                verify(self.secret, headers, body)
                ok = True
            except SignatureError as exc:
                ok, error = False, str(exc)
        record = ReceivedRequest(
            method=handler.command,
            path=handler.path,
            headers=headers,
            body=body,
            received_at=time.time(),
            signature_ok=ok,
            signature_error=error,
        )
        with self._lock:
            self._requests.append(record)
            return self._script.pop(0) if self._script else self.default
