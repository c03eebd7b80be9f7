"""Standard Webhooks signing: our sign/verify, checked against the spec's reference library.

No sockets here: only the pure functions of chalicelib.providers.webhook.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from chalicelib.errors import FatalError
from chalicelib.providers.webhook import (
    MAX_RETRY_AFTER_SECONDS,
    SignatureError,
    encode_body,
    generate_secret,
    parse_retry_after,
    sign,
    verify,
)

# The example published with the Standard Webhooks / Svix reference implementations.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TS = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


Mutation = Callable[[dict[str, str], bytes], tuple[dict[str, str], bytes]]


def _headers(msg_id: str, ts: int, signature: str) -> dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": signature}


def test_generate_secret_has_the_spec_form_and_32_random_bytes() -> None:
    # WHEN two secrets are generated
    first, second = generate_secret(), generate_secret()
    # THEN each is whsec_ + base64 of 32 bytes, and they differ
    for secret in (first, second):
        assert secret.startswith("whsec_")
        assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32
    assert first != second


def test_sign_matches_the_published_example() -> None:
    assert sign(SPEC_SECRET, SPEC_ID, SPEC_TS, SPEC_BODY) == SPEC_SIGNATURE


def test_sign_matches_the_reference_library() -> None:
    # GIVEN a fresh secret and a compact JSON body with non-ASCII text
    secret = generate_secret()
    body = encode_body({"text": "café ☕", "n": [1, 2.5, None, True]})
    ts = 1_700_000_000
    # WHEN both implementations sign it THEN they agree byte for byte
    reference = Webhook(secret).sign("msg_1", datetime.fromtimestamp(ts, tz=UTC), body.decode())
    assert sign(secret, "msg_1", ts, body) == reference


def test_reference_library_verifies_our_signature() -> None:
    # GIVEN a delivery signed by us, timestamped now
    secret = generate_secret()
    body = encode_body({"event": "alert.fired", "id": 42})
    ts = int(datetime.now(tz=UTC).timestamp())
    headers = _headers("job-123", ts, sign(secret, "job-123", ts, body))
    # WHEN a receiver using the reference library verifies it THEN it accepts and parses it
    assert Webhook(secret).verify(body, headers) == {"event": "alert.fired", "id": 42}
    # AND a tampered body is refused by it
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace(b"42", b"43"), headers)
    # AND another secret is refused by it
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(body, headers)


def test_verify_accepts_a_good_delivery_case_insensitively() -> None:
    secret = generate_secret()
    body = b'{"a":1}'
    headers = {k.upper(): v for k, v in _headers("m1", 1000, sign(secret, "m1", 1000, body)).items()}
    verify(secret, headers, body, now=1000)


def test_verify_accepts_the_reference_librarys_signature() -> None:
    secret = generate_secret()
    body = b'{"a":1}'
    signature = Webhook(secret).sign("m1", datetime.fromtimestamp(5000, tz=UTC), body.decode())
    verify(secret, _headers("m1", 5000, signature), body, now=5000)


def test_verify_accepts_any_of_several_signatures() -> None:
    # GIVEN a delivery signed with an old and a new secret (rotation)
    old, new = generate_secret(), generate_secret()
    body = b"[]"
    both = f"{sign(old, 'm', 10, body)} {sign(new, 'm', 10, body)}"
    # THEN a receiver holding either secret accepts it
    verify(old, _headers("m", 10, both), body, now=10)
    verify(new, _headers("m", 10, both), body, now=10)


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda h, b: (h, b + b" "), "tampered body"),
        (lambda h, b: ({**h, "webhook-id": "other"}, b), "other id"),
        (lambda h, b: ({**h, "webhook-timestamp": "1001"}, b), "other timestamp"),
        (lambda h, b: ({**h, "webhook-signature": "v2," + h["webhook-signature"][3:]}, b), "other version"),
        (lambda h, b: ({k: v for k, v in h.items() if k != "webhook-id"}, b), "missing id"),
        (lambda h, b: ({k: v for k, v in h.items() if k != "webhook-signature"}, b), "missing signature"),
        (lambda h, b: ({**h, "webhook-timestamp": "soon"}, b), "non-integer timestamp"),
    ],
)
def test_verify_refuses_altered_deliveries(mutate: Mutation, reason: str) -> None:
    secret = generate_secret()
    body = b'{"a":1}'
    headers, sent = mutate(_headers("m1", 1000, sign(secret, "m1", 1000, body)), body)
    with pytest.raises(SignatureError):
        verify(secret, headers, sent, now=1000)


def test_verify_refuses_other_secret() -> None:
    body = b"{}"
    headers = _headers("m1", 1000, sign(generate_secret(), "m1", 1000, body))
    with pytest.raises(SignatureError):
        verify(generate_secret(), headers, body, now=1000)


@pytest.mark.parametrize(("now", "ok"), [(1300, True), (700, True), (1301, False), (699, False)])
def test_verify_enforces_the_timestamp_tolerance(now: int, ok: bool) -> None:
    secret = generate_secret()
    body = b"{}"
    headers = _headers("m1", 1000, sign(secret, "m1", 1000, body))
    if ok:
        verify(secret, headers, body, tolerance=300, now=now)
    else:
        with pytest.raises(SignatureError):
            verify(secret, headers, body, tolerance=300, now=now)


@pytest.mark.parametrize("secret", ["", "abc", "whsec_", "whsec_!!!notbase64", "sk_live_abc"])
def test_sign_refuses_malformed_secrets(secret: str) -> None:
    with pytest.raises(ValueError):
        sign(secret, "m", 1, b"{}")


def test_secret_without_padding_is_accepted_like_the_reference_library() -> None:
    unpadded = SPEC_SECRET  # 32 base64 chars, no padding: the spec's own example
    assert sign(unpadded, SPEC_ID, SPEC_TS, SPEC_BODY) == SPEC_SIGNATURE


def test_encode_body_is_compact_json_of_any_json_value() -> None:
    assert encode_body({"a": [1, 2], "b": {"c": "d"}}) == b'{"a":[1,2],"b":{"c":"d"}}'
    assert encode_body([1, "x"]) == b'[1,"x"]'
    assert encode_body("text") == b'"text"'
    assert encode_body(None) == b"null"
    assert json.loads(encode_body({"t": "é"})) == {"t": "é"}


@pytest.mark.parametrize("body", [{"when": datetime.now()}, {"n": float("nan")}, {1, 2}])
def test_encode_body_refuses_non_json(body: object) -> None:
    with pytest.raises(FatalError) as caught:
        encode_body(body)
    assert caught.value.code == "invalid_webhook_body"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("7", 7.0),
        (" 120 ", 120.0),
        ("0", 0.0),
        ("-5", None),
        ("1.5", None),
        ("soon", None),
        ("999999999", float(MAX_RETRY_AFTER_SECONDS)),
    ],
)
def test_parse_retry_after_seconds(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=0) == expected


def test_parse_retry_after_http_date() -> None:
    now = 1_700_000_000.0
    in_90s = format_datetime(datetime.fromtimestamp(now + 90, tz=UTC), usegmt=True)
    past = format_datetime(datetime.fromtimestamp(now - 90, tz=UTC), usegmt=True)
    assert parse_retry_after(in_90s, now=now) == pytest.approx(90.0)
    assert parse_retry_after(past, now=now) == 0.0
