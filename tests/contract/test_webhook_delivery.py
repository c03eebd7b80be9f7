"""Contract tests for WebhookDeliverer against a real local HTTP(S) endpoint (webhook_receiver.py).

They pin the API contract's outcome rules (2xx success; 4xx but 408/429 fatal; the rest retried,
Retry-After honoured), the Standard Webhooks signature as a receiver sees it, the SSRF guard
(refusal happens before any connection), and the timeouts. Sockets: loopback only.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks import Webhook

from chalicelib.errors import FatalError, RetryableError
from chalicelib.providers.webhook import WebhookDeliverer, generate_secret

from .webhook_receiver import Reply, WebhookReceiver

pytestmark = [pytest.mark.contract, pytest.mark.enable_socket]

BODY = {"event": "incident.escalated", "incident_id": "inc-1", "level": 2, "note": "café ☕"}


@pytest.fixture
def secret() -> str:
    return generate_secret()


@pytest.fixture
def receiver(secret: str) -> Iterator[WebhookReceiver]:
    with WebhookReceiver(secret=secret) as running:
        yield running


@pytest.fixture
def deliverer() -> WebhookDeliverer:
    # The receiver listens on 127.0.0.1, which only a stage that allows private targets may reach.
    return WebhookDeliverer(allow_private=True, connect_timeout=1.0, read_timeout=2.0)


@pytest.fixture
def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- success and what the receiver sees ----------------------------------------------------------


def test_2xx_is_success_and_the_receiver_gets_the_signed_body_once(
    receiver: WebhookReceiver, deliverer: WebhookDeliverer, secret: str
) -> None:
    # WHEN a job delivers its body
    result = deliverer.deliver(receiver.url, BODY, None, msg_id="job-1", secret=secret)

    # THEN it succeeded, with the status and a duration
    assert result["status_code"] == 200
    assert isinstance(result["response_ms"], int) and result["response_ms"] >= 0
    assert set(result) == {"status_code", "response_ms"}
    # AND the receiver got exactly one POST with the compact JSON body
    [request] = receiver.wait_for(1)
    time.sleep(0.05)
    assert len(receiver.requests) == 1
    assert request.method == "POST"
    assert request.path == "/hook"
    assert request.body == json.dumps(BODY, separators=(",", ":")).encode()
    assert json.loads(request.body) == BODY
    assert request.headers["content-type"] == "application/json"
    assert request.headers["content-length"] == str(len(request.body))
    assert request.headers["user-agent"] == "Herald-Webhooks/1"
    assert request.headers["webhook-id"] == "job-1"
    assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 10
    # AND the signature verifies with the org's secret, by our verifier and by the spec's library
    assert request.signature_ok is True, request.signature_error
    assert Webhook(secret).verify(request.body, request.headers) == BODY


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_every_2xx_is_success(receiver: WebhookReceiver, deliverer: WebhookDeliverer, secret: str, status: int) -> None:
    receiver.script(Reply(status))
    assert deliverer.deliver(receiver.url, BODY, msg_id="m", secret=secret)["status_code"] == status


@pytest.mark.parametrize("body", [[1, 2, 3], "plain string", 42, None, {}])
def test_any_json_value_is_delivered_and_signed(
    receiver: WebhookReceiver, deliverer: WebhookDeliverer, secret: str, body: Any
) -> None:
    deliverer.deliver(receiver.url, body, msg_id="m", secret=secret)
    [request] = receiver.wait_for(1)
    assert json.loads(request.body) == body
    assert request.signature_ok is True


def test_caller_headers_are_sent_but_cannot_override_the_signature_or_framing(
    receiver: WebhookReceiver, deliverer: WebhookDeliverer, secret: str
) -> None:
    # GIVEN caller headers, some of which try to replace what Herald controls
    headers = {
        "X-Tenant": "acme",
        "Authorization": "Bearer customer-token",
        "webhook-id": "forged",
        "Webhook-Signature": "v1,forged",
        "webhook-timestamp": "1",
        "Host": "evil.example",
        "Content-Length": "1",
        "Content-Type": "text/plain",
        "Transfer-Encoding": "chunked",
    }
    # WHEN delivered
    deliverer.deliver(receiver.url, BODY, headers, msg_id="job-7", secret=secret)
    # THEN the custom headers arrive and the reserved ones are Herald's
    [request] = receiver.wait_for(1)
    assert request.headers["x-tenant"] == "acme"
    assert request.headers["authorization"] == "Bearer customer-token"
    assert request.headers["webhook-id"] == "job-7"
    assert request.headers["host"] == f"127.0.0.1:{receiver.port}"
    assert request.headers["content-type"] == "application/json"
    assert "transfer-encoding" not in request.headers
    assert request.body == json.dumps(BODY, separators=(",", ":")).encode()
    assert request.signature_ok is True


def test_a_caller_user_agent_replaces_ours(receiver: WebhookReceiver, deliverer: WebhookDeliverer, secret: str) -> None:
    deliverer.deliver(receiver.url, BODY, {"User-Agent": "acme-bridge/2"}, msg_id="m", secret=secret)
    [request] = receiver.wait_for(1)
    assert request.headers["user-agent"] == "acme-bridge/2"


@pytest.mark.parametrize("headers", [{"X-Bad": "a\r\nX-Injected: 1"}, {"Bad Name": "x"}, {"X-Num": 5}])
def test_headers_http_cannot_carry_are_fatal_before_connecting(
    receiver: WebhookReceiver, deliverer: WebhookDeliverer, secret: str, headers: Any
) -> None:
    with pytest.raises(FatalError) as caught:
        deliverer.deliver(receiver.url, BODY, headers, msg_id="m", secret=secret)
    assert caught.value.code == "invalid_webhook_headers"
    assert receiver.requests == []


def test_a_large_response_body_is_not_read_past_the_limit(secret: str) -> None:
    # GIVEN an endpoint answering 1 MiB
    big = Reply(200, {"Content-Type": "text/plain"}, b"x" * (1024 * 1024))
    with WebhookReceiver(secret=secret, default=big) as receiver:
        deliverer = WebhookDeliverer(allow_private=True, max_response_bytes=1024, read_timeout=2.0)
        # THEN delivery still succeeds promptly
        assert deliverer.deliver(receiver.url, BODY, msg_id="m", secret=secret)["status_code"] == 200


# --- failures -------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 413, 422])
def test_4xx_is_fatal(receiver: WebhookReceiver, deliverer: WebhookDeliverer, secret: str, status: int) -> None:
    receiver.script(Reply(status, {"Content-Type": "application/json"}, b'{"error":"nope"}'))
    with pytest.raises(FatalError) as caught:
        deliverer.deliver(receiver.url, BODY, msg_id="m", secret=secret)
    assert caught.value.code == f"http_{status}"
    assert caught.value.retryable is False
    assert "nope" in caught.value.message  # a snippet of the answer helps the customer
    assert len(receiver.wait_for(1)) == 1


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_408_429_and_5xx_are_retryable(
    receiver: WebhookReceiver, deliverer: WebhookDeliverer, secret: str, status: int
) -> None:
    receiver.script(Reply(status))
    with pytest.raises(RetryableError) as caught:
        deliverer.deliver(receiver.url, BODY, msg_id="m", secret=secret)
    assert caught.value.code == f"http_{status}"
    assert caught.value.retry_after is None


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_seconds_is_honoured(
    receiver: WebhookReceiver, deliverer: WebhookDeliverer, secret: str, status: int
) -> None:
    receiver.script(Reply(status, {"Retry-After": "7"}))
    with pytest.raises(RetryableError) as caught:
        deliverer.deliver(receiver.url, BODY, msg_id="m", secret=secret)
    assert caught.value.retry_after == 7.0


def test_retry_after_http_date_is_honoured(receiver: WebhookReceiver, deliverer: WebhookDeliverer, secret: str) -> None:
    when = format_datetime(datetime.fromtimestamp(time.time() + 120, tz=UTC), usegmt=True)
    receiver.script(Reply(503, {"Retry-After": when}))
    with pytest.raises(RetryableError) as caught:
        deliverer.deliver(receiver.url, BODY, msg_id="m", secret=secret)
    assert caught.value.retry_after == pytest.approx(120, abs=3)


def test_retry_after_on_a_500_is_ignored(receiver: WebhookReceiver, deliverer: WebhookDeliverer, secret: str) -> None:
    receiver.script(Reply(500, {"Retry-After": "30"}))
    with pytest.raises(RetryableError) as caught:
        deliverer.deliver(receiver.url, BODY, msg_id="m", secret=secret)
    assert caught.value.retry_after is None


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirects_are_fatal_and_not_followed(
    receiver: WebhookReceiver, deliverer: WebhookDeliverer, secret: str, status: int
) -> None:
    # GIVEN an endpoint redirecting to another path on itself
    receiver.script(Reply(status, {"Location": receiver.url + "/moved"}))
    with pytest.raises(FatalError) as caught:
        deliverer.deliver(receiver.url, BODY, msg_id="m", secret=secret)
    assert caught.value.code == "http_3xx_redirect"
    time.sleep(0.1)
    assert [r.path for r in receiver.requests] == ["/hook"]


def test_a_receiver_slower_than_read_timeout_is_a_retryable_timeout(secret: str) -> None:
    with WebhookReceiver(secret=secret) as receiver:
        receiver.script(Reply(200, delay=5.0))
        deliverer = WebhookDeliverer(allow_private=True, connect_timeout=1.0, read_timeout=0.3)
        started = time.monotonic()
        with pytest.raises(RetryableError) as caught:
            deliverer.deliver(receiver.url, BODY, msg_id="m", secret=secret)
        assert caught.value.code == "timeout"
        assert time.monotonic() - started < 2.0
        assert len(receiver.requests) == 1  # it did arrive; the answer did not


def test_a_receiver_dripping_its_answer_is_cut_off_at_the_deadline() -> None:
    # GIVEN a server that sends its status line one byte every 0.1 s (each read is quick, the
    # whole answer is not)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    stop = threading.Event()

    def drip() -> None:
        conn, _ = listener.accept()
        with conn:
            for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 200:
                if stop.wait(0.1):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return

    thread = threading.Thread(target=drip, daemon=True)
    thread.start()
    try:
        deliverer = WebhookDeliverer(allow_private=True, connect_timeout=1.0, read_timeout=0.8)
        started = time.monotonic()
        with pytest.raises(RetryableError) as caught:
            deliverer.deliver(f"http://127.0.0.1:{port}/", BODY, msg_id="m", secret=generate_secret())
        # THEN the total deadline, not the per-read timeout, ended it
        assert caught.value.code == "timeout"
        assert 0.7 < time.monotonic() - started < 2.0
    finally:
        stop.set()
        listener.close()
        thread.join(timeout=2)


def test_connection_refused_is_retryable(deliverer: WebhookDeliverer, secret: str, closed_port: int) -> None:
    with pytest.raises(RetryableError) as caught:
        deliverer.deliver(f"http://127.0.0.1:{closed_port}/hook", BODY, msg_id="m", secret=secret)
    assert caught.value.code == "connection_error"


def test_a_connection_closed_without_an_answer_is_retryable(secret: str) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def hang_up() -> None:
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.close()

    thread = threading.Thread(target=hang_up, daemon=True)
    thread.start()
    try:
        deliverer = WebhookDeliverer(allow_private=True, read_timeout=2.0)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
        with pytest.raises(RetryableError) as caught:
            deliverer.deliver(url, BODY, msg_id="m", secret=secret)
        assert caught.value.code == "connection_error"
    finally:
        listener.close()
        thread.join(timeout=2)


def test_the_next_vetted_address_is_tried_when_one_refuses(receiver: WebhookReceiver, secret: str) -> None:
    # GIVEN a name resolving to a dead address first (127.0.0.2: nothing listens there) and the
    # receiver second
    resolver = {"hooks.example.test": ["127.0.0.2", "127.0.0.1"]}
    deliverer = WebhookDeliverer(allow_private=True, resolver=lambda host, port: resolver[host])
    url = f"http://hooks.example.test:{receiver.port}/hook"
    assert deliverer.deliver(url, BODY, msg_id="m", secret=secret)["status_code"] == 200


@pytest.mark.parametrize("bad_secret", ["", "whsec_", "not-a-secret"])
def test_an_unusable_secret_is_fatal_before_connecting(
    receiver: WebhookReceiver, deliverer: WebhookDeliverer, bad_secret: str
) -> None:
    with pytest.raises(FatalError) as caught:
        deliverer.deliver(receiver.url, BODY, msg_id="m", secret=bad_secret)
    assert caught.value.code == "invalid_webhook_secret"
    assert receiver.requests == []


# --- the SSRF guard -------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "127.1", "0.0.0.0"])
def test_private_targets_are_refused_before_connecting(receiver: WebhookReceiver, secret: str, host: str) -> None:
    # GIVEN a stage that does not allow private targets
    deliverer = WebhookDeliverer(allow_private=False)
    # WHEN a job aims at the loopback receiver
    with pytest.raises(FatalError) as caught:
        deliverer.deliver(f"http://{host}:{receiver.port}/hook", BODY, msg_id="m", secret=secret)
    # THEN it is refused as forbidden and nothing reached the receiver
    assert caught.value.code == "webhook_target_forbidden"
    time.sleep(0.1)
    assert receiver.requests == []


def test_a_name_is_connected_at_its_vetted_address_with_the_original_host_header(
    receiver: WebhookReceiver, secret: str
) -> None:
    # GIVEN a name only our resolver knows (the OS resolver would fail on it): so the connection
    # can only have gone to the address the guard vetted, not to a second lookup
    calls: list[str] = []

    def resolver(host: str, port: int) -> list[str]:
        calls.append(host)
        return ["127.0.0.1"]

    deliverer = WebhookDeliverer(allow_private=True, resolver=resolver)
    url = f"http://hooks.invalid:{receiver.port}/hook?x=1"
    assert deliverer.deliver(url, BODY, msg_id="m", secret=secret)["status_code"] == 200
    [request] = receiver.wait_for(1)
    assert calls == ["hooks.invalid"]
    assert request.headers["host"] == f"hooks.invalid:{receiver.port}"
    assert request.path == "/hook?x=1"


# --- https: pinned IP, SNI and certificate checked against the URL's name -------------------------


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    try:
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=hooks.example.test",
                "-addext",
                "subjectAltName=DNS:hooks.example.test",
                "-keyout",
                str(key),
                "-out",
                str(cert),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"openssl cannot make a test certificate: {exc}")
    return cert, key


def test_https_uses_sni_and_verifies_the_certificate_for_the_urls_name(
    tls_files: tuple[Path, Path], secret: str
) -> None:
    cert, key = tls_files
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    sni_seen: list[str | None] = []

    def record_sni(sock: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
        sni_seen.append(name)

    server_context.sni_callback = record_sni  # type: ignore[assignment, unused-ignore]
    client_context = ssl.create_default_context(cafile=str(cert))

    with WebhookReceiver(secret=secret, ssl_context=server_context) as receiver:
        deliverer = WebhookDeliverer(
            allow_private=True,
            resolver=lambda host, port: ["127.0.0.1"],
            ssl_context=client_context,
        )
        # WHEN delivering to the certificate's name (pinned to 127.0.0.1)
        url = f"https://hooks.example.test:{receiver.port}/hook"
        assert deliverer.deliver(url, BODY, msg_id="m", secret=secret)["status_code"] == 200
        # THEN the TLS server saw the name as SNI and the request carried it as Host
        [request] = receiver.wait_for(1)
        assert sni_seen == ["hooks.example.test"]
        assert request.headers["host"] == f"hooks.example.test:{receiver.port}"
        assert request.signature_ok is True

        # AND a name the certificate does not cover fails TLS verification (retryable)
        with pytest.raises(RetryableError) as caught:
            deliverer.deliver(f"https://other.example.test:{receiver.port}/hook", BODY, msg_id="m", secret=secret)
        assert caught.value.code == "tls_error"


def test_https_refuses_an_untrusted_certificate(tls_files: tuple[Path, Path], secret: str) -> None:
    cert, key = tls_files
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    with WebhookReceiver(secret=secret, ssl_context=server_context) as receiver:
        # The default trust store does not know our self-signed certificate.
        deliverer = WebhookDeliverer(allow_private=True, resolver=lambda host, port: ["127.0.0.1"])
        with pytest.raises(RetryableError) as caught:
            deliverer.deliver(f"https://hooks.example.test:{receiver.port}/hook", BODY, msg_id="m", secret=secret)
        assert caught.value.code == "tls_error"
        assert receiver.requests == []
