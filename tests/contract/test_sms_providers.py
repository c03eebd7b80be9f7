"""Contract tests for the SMS adapters: one suite, every implementation.

The shared suite runs against SNS on moto, Telnyx on a local fake (telnyx_fake.py), and SNS on
LocalStack when it answers at LOCALSTACK_ENDPOINT (default http://127.0.0.1:4566; marked
``integration``, skipped otherwise). Provider-specific behaviour (Telnyx's error codes and
headers, SNS's error classification, SSM config loading) follows in its own sections.

Sockets: loopback only (the fake, a closed port, LocalStack).
"""

from __future__ import annotations

import io
import json
import logging
import os
import random
import socket
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any
from unittest.mock import Mock

import boto3
import pytest
from botocore.config import Config
from botocore.stub import Stubber
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.sns.models import sns_backends

from chalicelib.errors import FatalError, JobError, RetryableError
from chalicelib.observability import logger, mask_phone
from chalicelib.providers.sms import (
    SmsProvider,
    SmsSendResult,
    SnsSmsProvider,
    TelnyxConfig,
    TelnyxSmsProvider,
    build_sms_provider,
    load_telnyx_config,
    reset_telnyx_config_cache,
)
from tests.support.cloud import LOCALSTACK as CLOUD_ENDPOINT

from .telnyx_fake import Answer, TelnyxFake, error_answer

pytestmark = [pytest.mark.contract, pytest.mark.enable_socket]

REGION = "us-east-1"
API_KEY = "KEY01TESTSECRETdeadbeefCAFE"  # distinctive, so any leak is easy to find
PROFILE_ID = "40017f8e-0000-4000-8000-profile00001"
FROM = "+15550001111"
INVALID_NUMBER = "+05551234567"  # leading zero: not E.164 for SNS, LocalStack nor Telnyx
LOCALSTACK = os.environ.get("LOCALSTACK_ENDPOINT", CLOUD_ENDPOINT)
FAST_TIMEOUT = (1.0, 0.4)


def random_number() -> str:
    """A fresh E.164 number per test, so shared backends (LocalStack) never mix tests up."""
    return "+1555" + "".join(random.choices("0123456789", k=7))


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _fresh_config_cache() -> Iterator[None]:
    reset_telnyx_config_cache()
    yield
    reset_telnyx_config_cache()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials: nothing here may reach real AWS by accident."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_SESSION_TOKEN": "test",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture
def closed_port() -> int:
    """A loopback port nobody listens on: connecting to it is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Logs:
    """What the test logged: ``ours`` is Herald's Powertools JSON lines, ``everything`` adds the
    stdlib loggers at DEBUG (botocore, urllib3) and raw stdout/stderr."""

    def __init__(self, buffer: io.StringIO, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture):
        self._buffer, self._capsys, self._caplog = buffer, capsys, caplog
        self._out = ""

    def ours(self) -> str:
        return self._buffer.getvalue()

    def everything(self) -> str:
        out, err = self._capsys.readouterr()
        self._out += out + err
        return self.ours() + self._caplog.text + self._out


@pytest.fixture
def logs(capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> Iterator[Logs]:
    """Powertools' handler holds the stdout of import time, so its stream is swapped for a buffer."""
    handler = logger.registered_handler
    assert isinstance(handler, logging.StreamHandler)
    buffer = io.StringIO()
    previous_stream = handler.setStream(buffer)
    previous_level = logger.log_level
    logger.setLevel("DEBUG")
    caplog.set_level(logging.DEBUG)
    yield Logs(buffer, capsys, caplog)
    handler.setStream(previous_stream)
    logger.setLevel(previous_level)


def json_lines(text: str) -> list[dict[str, Any]]:
    lines = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                lines.append(json.loads(line))
            except ValueError:
                pass
    return lines


def assert_secret_free(*things: object, secret: str = API_KEY) -> None:
    for thing in things:
        for rendering in (str(thing), repr(thing)):
            assert secret not in rendering


def error_texts(exc: JobError) -> tuple[object, ...]:
    return (exc, exc.args, exc.code, exc.message, exc.as_dict(), exc.__cause__, exc.__context__)


# -- the shared suite ----------------------------------------------------------------------------


@dataclass
class Harness:
    """One adapter wired to one backend, plus a way to read back what the backend received."""

    provider: SmsProvider
    name: str
    delivered: Callable[[str], list[str]]  # texts the backend holds for a number
    unreachable: Callable[[], SmsProvider]  # the same adapter aimed at a closed port
    eventually: bool = False  # the backend records asynchronously: poll


def _sns_moto(closed_port: int) -> Iterator[Harness]:
    with mock_aws():
        client = boto3.client("sns", region_name=REGION)

        def delivered(to: str) -> list[str]:
            backend = sns_backends[DEFAULT_ACCOUNT_ID][REGION]
            return [text for phone, text in backend.sms_messages.values() if phone == to]

        yield Harness(SnsSmsProvider(client), "sns", delivered, lambda: _unreachable_sns(closed_port))


def _sns_localstack(closed_port: int) -> Iterator[Harness]:
    try:
        urllib.request.urlopen(f"{LOCALSTACK}/_localstack/health", timeout=1).close()
    except OSError:
        pytest.skip(f"LocalStack is not reachable at {LOCALSTACK}")
    client = boto3.client("sns", region_name=REGION, endpoint_url=LOCALSTACK)

    def delivered(to: str) -> list[str]:
        url = f"{LOCALSTACK}/_aws/sns/sms-messages?phoneNumber={urllib.parse.quote(to)}&region={REGION}"
        with urllib.request.urlopen(url, timeout=5) as response:
            body = json.load(response)
        return [m["Message"] for m in body.get("sms_messages", {}).get(to, [])]

    yield Harness(SnsSmsProvider(client), "sns", delivered, lambda: _unreachable_sns(closed_port), True)


def _telnyx_fake(closed_port: int) -> Iterator[Harness]:
    with TelnyxFake(api_key=API_KEY) as fake:

        def delivered(to: str) -> list[str]:
            return [text for phone, text in fake.messages() if phone == to]

        def unreachable() -> SmsProvider:
            return TelnyxSmsProvider(API_KEY, PROFILE_ID, FROM, f"http://127.0.0.1:{closed_port}", FAST_TIMEOUT)

        provider = TelnyxSmsProvider(API_KEY, PROFILE_ID, FROM, base_url=fake.base_url, timeout=FAST_TIMEOUT)
        yield Harness(provider, "telnyx", delivered, unreachable)


def _unreachable_sns(port: int) -> SmsProvider:
    client = boto3.client(
        "sns",
        region_name=REGION,
        endpoint_url=f"http://127.0.0.1:{port}",
        config=Config(retries={"total_max_attempts": 1}, connect_timeout=1, read_timeout=1),
    )
    return SnsSmsProvider(client)


HARNESSES = {"sns-moto": _sns_moto, "telnyx-fake": _telnyx_fake, "sns-localstack": _sns_localstack}


@pytest.fixture(
    params=[
        "sns-moto",
        "telnyx-fake",
        pytest.param("sns-localstack", marks=pytest.mark.integration),
    ]
)
def harness(request: pytest.FixtureRequest, aws_env: None, closed_port: int) -> Iterator[Harness]:
    if request.param.endswith("localstack"):
        request.getfixturevalue("local_cloud")  # the project's fixture starts the cloud if needed
    yield from HARNESSES[request.param](closed_port)


def wait_for(check: Callable[[], bool], deadline_s: float = 5.0) -> bool:
    """Polls with a deadline instead of sleeping a fixed time."""
    end = time.monotonic() + deadline_s
    while True:
        if check():
            return True
        if time.monotonic() > end:
            return False
        time.sleep(0.05)


def test_send_delivers_the_text_and_returns_the_provider_message_id(harness: Harness) -> None:
    # GIVEN a working provider and a valid number
    to, text = random_number(), "Disk full on db-1 (critical) ✓"
    # WHEN one SMS is sent
    result = harness.provider.send(to, text, idempotency_key="job-1")
    # THEN the provider's id comes back and the backend holds exactly that text for that number
    assert isinstance(result, SmsSendResult)
    assert result.provider == harness.name == harness.provider.name
    assert result.message_id
    assert wait_for(lambda: harness.delivered(to) == [text], 5.0 if harness.eventually else 0.0)


def test_an_invalid_number_is_fatal_and_not_echoed(harness: Harness) -> None:
    # GIVEN a number the provider refuses WHEN sending THEN no retry is scheduled
    with pytest.raises(FatalError) as caught:
        harness.provider.send(INVALID_NUMBER, "hello", idempotency_key="job-2")
    assert caught.value.code.startswith(f"{harness.name}_")
    assert not caught.value.retryable
    # and the raw number does not travel into job records and dead letters
    assert INVALID_NUMBER not in caught.value.message
    assert harness.delivered(INVALID_NUMBER) == []


def test_an_unreachable_provider_is_retryable(harness: Harness) -> None:
    # GIVEN the provider's endpoint refuses connections WHEN sending THEN try again later
    with pytest.raises(RetryableError) as caught:
        harness.unreachable().send(random_number(), "hello", idempotency_key="job-3")
    assert caught.value.code == "network_error"
    assert caught.value.retryable


def test_every_attempt_is_logged_with_the_number_masked(harness: Harness, logs: Logs) -> None:
    to = random_number()
    harness.provider.send(to, "first", idempotency_key="job-4")
    with pytest.raises(FatalError):
        harness.provider.send(INVALID_NUMBER, "second", idempotency_key="job-5")

    output = logs.ours()
    attempts = [line for line in json_lines(output) if line.get("message") == "SMS send attempt"]
    assert [(a["to"], a["idempotency_key"], a["sms_provider"]) for a in attempts] == [
        (mask_phone(to), "job-4", harness.name),
        (mask_phone(INVALID_NUMBER), "job-5", harness.name),
    ]
    assert any(line.get("error_code", "").startswith(harness.name) for line in json_lines(output))
    assert to not in output and INVALID_NUMBER not in output
    assert API_KEY not in logs.everything()
    assert_secret_free(harness.provider)


# -- Telnyx --------------------------------------------------------------------------------------


@pytest.fixture
def fake() -> Iterator[TelnyxFake]:
    with TelnyxFake(api_key=API_KEY) as server:
        yield server


@pytest.fixture
def telnyx(fake: TelnyxFake) -> TelnyxSmsProvider:
    return TelnyxSmsProvider(API_KEY, PROFILE_ID, FROM, base_url=fake.base_url, timeout=FAST_TIMEOUT)


def test_telnyx_request_carries_bearer_auth_json_and_idempotency_key(
    fake: TelnyxFake, telnyx: TelnyxSmsProvider
) -> None:
    result = telnyx.send("+15551234567", "Server down", idempotency_key="incident:i-1:level:1:repeat:0")

    [request] = fake.requests
    assert (request.method, request.path) == ("POST", "/v2/messages")
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["idempotency-key"] == "incident:i-1:level:1:repeat:0"
    assert request.json == {
        "from": FROM,
        "to": "+15551234567",
        "text": "Server down",
        "messaging_profile_id": PROFILE_ID,
    }
    assert result == SmsSendResult("telnyx", fake.sent_ids[0])


def test_telnyx_idempotency_keys_outside_its_alphabet_are_hashed_stably(
    fake: TelnyxFake, telnyx: TelnyxSmsProvider
) -> None:
    telnyx.send("+15551234567", "a", idempotency_key="org 1/job é")
    telnyx.send("+15551234567", "a", idempotency_key="org 1/job é")
    first, second = (r.headers["idempotency-key"] for r in fake.requests)
    assert first == second and first.startswith("sha256:") and len(first) <= 255


def test_telnyx_without_messaging_profile_omits_it(fake: TelnyxFake) -> None:
    provider = TelnyxSmsProvider(API_KEY, None, FROM, base_url=fake.base_url, timeout=FAST_TIMEOUT)
    provider.send("+15551234567", "hi", idempotency_key="k")
    assert "messaging_profile_id" not in fake.requests[0].json


def test_telnyx_wrong_api_key_is_fatal(fake: TelnyxFake) -> None:
    provider = TelnyxSmsProvider("KEY_wrong", PROFILE_ID, FROM, base_url=fake.base_url, timeout=FAST_TIMEOUT)
    with pytest.raises(FatalError) as caught:
        provider.send("+15551234567", "hi", idempotency_key="k")
    assert caught.value.code == "telnyx_10009"


@pytest.mark.parametrize("code", ["10009", "40001", "40300", "40310", "40311"])
def test_telnyx_fatal_codes_raise_fatal_error(
    code: str, fake: TelnyxFake, telnyx: TelnyxSmsProvider, logs: Logs
) -> None:
    fake.answer(error_answer(code))
    with pytest.raises(FatalError) as caught:
        telnyx.send("+15551234567", "hi", idempotency_key="k")
    assert caught.value.code == f"telnyx_{code}"
    assert caught.value.message.startswith("Telnyx answered ")
    assert_secret_free(*error_texts(caught.value), logs.everything())


@pytest.mark.parametrize("code", ["40400", "50000", "50001"])
def test_telnyx_retryable_codes_raise_retryable_error(
    code: str, fake: TelnyxFake, telnyx: TelnyxSmsProvider, logs: Logs
) -> None:
    fake.answer(error_answer(code))
    with pytest.raises(RetryableError) as caught:
        telnyx.send("+15551234567", "hi", idempotency_key="k")
    assert caught.value.code == f"telnyx_{code}"
    assert caught.value.retry_after is None
    assert_secret_free(*error_texts(caught.value), logs.everything())


@pytest.mark.parametrize(
    ("answer", "code", "retry_after"),
    [
        (Answer(500, b""), "telnyx_http_500", None),
        (Answer(502, "<html>Bad gateway</html>"), "telnyx_http_502", None),
        (Answer(503, b"", {"Retry-After": "7"}), "telnyx_http_503", 7.0),
        (Answer(429, b"", {"Retry-After": "12"}), "telnyx_http_429", 12.0),
        (Answer(429, b""), "telnyx_http_429", None),
        (Answer(429, b"", {"Retry-After": "soon"}), "telnyx_http_429", None),
        (Answer(429, b"", {"Retry-After": "-5"}), "telnyx_http_429", 0.0),
        (error_answer("10011", Retry_After="3"), "telnyx_10011", 3.0),
        (error_answer("50001", Retry_After="30"), "telnyx_50001", 30.0),
        (Answer(200, {"data": {"record_type": "message"}}), "telnyx_bad_response", None),
        (Answer(200, "not json"), "telnyx_bad_response", None),
        (Answer(302, b"", {"Location": "https://example.com/"}), "telnyx_http_302", None),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_telnyx_transient_http_answers_are_retryable(
    answer: Answer, code: str, retry_after: float | None, fake: TelnyxFake, telnyx: TelnyxSmsProvider
) -> None:
    fake.answer(answer)
    with pytest.raises(RetryableError) as caught:
        telnyx.send("+15551234567", "hi", idempotency_key="k")
    assert caught.value.code == code
    assert caught.value.retry_after == retry_after


def test_telnyx_retry_after_as_http_date(fake: TelnyxFake, telnyx: TelnyxSmsProvider) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=60), usegmt=True)
    fake.answer(Answer(429, b"", {"Retry-After": when}))
    with pytest.raises(RetryableError) as caught:
        telnyx.send("+15551234567", "hi", idempotency_key="k")
    assert caught.value.retry_after is not None and 50 <= caught.value.retry_after <= 60


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        (error_answer("10016"), "telnyx_10016"),
        (Answer(400, b""), "telnyx_http_400"),
        (Answer(404, {"errors": "not a list"}), "telnyx_http_404"),
        (error_answer("40310", status=500), "telnyx_40310"),  # a known fatal code wins over the status
    ],
)
def test_telnyx_other_client_errors_are_fatal(
    answer: Answer, code: str, fake: TelnyxFake, telnyx: TelnyxSmsProvider
) -> None:
    fake.answer(answer)
    with pytest.raises(FatalError) as caught:
        telnyx.send("+15551234567", "hi", idempotency_key="k")
    assert caught.value.code == code


def test_telnyx_timeout_is_retryable(fake: TelnyxFake, telnyx: TelnyxSmsProvider, logs: Logs) -> None:
    # GIVEN Telnyx answers after the adapter's read timeout (0.4 s here, 10 s in production)
    fake.answer(Answer(200, {"data": {"id": "late"}}, delay=3.0))
    started = time.monotonic()
    with pytest.raises(RetryableError) as caught:
        telnyx.send("+15551234567", "hi", idempotency_key="k")
    assert caught.value.code == "network_timeout"
    assert time.monotonic() - started < 2.5
    assert_secret_free(*error_texts(caught.value), logs.everything())


def test_telnyx_dropped_connection_is_retryable(fake: TelnyxFake, telnyx: TelnyxSmsProvider) -> None:
    fake.answer(Answer(drop=True))
    with pytest.raises(RetryableError) as caught:
        telnyx.send("+15551234567", "hi", idempotency_key="k")
    assert caught.value.code == "network_error"


def test_telnyx_error_details_are_scrubbed_of_key_and_number(
    fake: TelnyxFake, telnyx: TelnyxSmsProvider, logs: Logs
) -> None:
    # GIVEN an error detail that (badly) echoes the request's key and number
    fake.answer(error_answer("40300", detail=f"Key {API_KEY} may not text +15551234567"))
    with pytest.raises(FatalError) as caught:
        telnyx.send("+15551234567", "hi", idempotency_key="k")
    assert "+15551234567" not in caught.value.message
    assert mask_phone("+15551234567") in caught.value.message
    assert_secret_free(*error_texts(caught.value), logs.everything())


def test_telnyx_key_stays_out_of_reprs_and_constructor_errors() -> None:
    provider = TelnyxSmsProvider(API_KEY, PROFILE_ID, FROM)
    assert "***" in repr(provider)
    assert_secret_free(provider, TelnyxConfig(api_key=API_KEY, from_number=FROM))
    with pytest.raises(ValueError) as caught:
        TelnyxSmsProvider(API_KEY + "\r\nX-Evil: 1", PROFILE_ID, FROM)
    assert_secret_free(caught.value)


# -- SNS -----------------------------------------------------------------------------------------


@pytest.fixture
def sns(aws_env: None) -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("sns", region_name=REGION)


def test_sns_publishes_a_transactional_sms_to_the_number(sns: Any) -> None:
    seen: list[dict[str, Any]] = []
    sns.meta.events.register("provide-client-params.sns.Publish", lambda params, **_: seen.append(params))
    SnsSmsProvider(sns).send("+15551234567", "hi", idempotency_key="k")
    assert seen == [
        {
            "PhoneNumber": "+15551234567",
            "Message": "hi",
            "MessageAttributes": {"AWS.SNS.SMS.SMSType": {"DataType": "String", "StringValue": "Transactional"}},
        }
    ]


@pytest.mark.parametrize(
    ("aws_code", "status", "expected"),
    [
        ("InvalidParameter", 400, FatalError),
        ("InvalidParameterValue", 400, FatalError),
        ("OptedOut", 400, FatalError),
        ("AuthorizationError", 403, FatalError),
        ("KMSDisabled", 400, FatalError),
        ("SomethingNew", 400, FatalError),
        ("Throttling", 400, RetryableError),
        ("Throttled", 429, RetryableError),
        ("KMSThrottling", 400, RetryableError),
        ("InternalError", 500, RetryableError),
        ("ServiceUnavailable", 503, RetryableError),
        ("SomethingNew", 503, RetryableError),
        ("SomethingNew", 429, RetryableError),
    ],
)
def test_sns_errors_are_classified(aws_code: str, status: int, expected: type[JobError], aws_env: None) -> None:
    client = boto3.client("sns", region_name=REGION)
    with Stubber(client) as stub:
        stub.add_client_error("publish", aws_code, "Invalid parameter: PhoneNumber +15551234567", status)
        with pytest.raises(expected) as caught:
            SnsSmsProvider(client).send("+15551234567", "hi", idempotency_key="k")
    assert type(caught.value) is expected
    assert caught.value.code == f"sns_{aws_code}"
    assert "+15551234567" not in caught.value.message


# -- SSM configuration and provider choice -------------------------------------------------------

PREFIX = "/herald/test"


@pytest.fixture
def ssm(aws_env: None) -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("ssm", region_name=REGION)


def put_telnyx(
    ssm: Any, *, key: str | None = API_KEY, profile: str | None = PROFILE_ID, sender: str | None = FROM
) -> None:
    for name, value in (("api_key", key), ("messaging_profile_id", profile), ("from_number", sender)):
        if value is not None:
            ssm.put_parameter(Name=f"{PREFIX}/telnyx/{name}", Value=value, Type="SecureString")


def count_calls(client: Any, operation: str) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []
    client.meta.events.register(f"provide-client-params.ssm.{operation}", lambda params, **_: calls.append(params))
    return calls


def test_ssm_config_is_read_decrypted_in_one_call_and_cached(ssm: Any) -> None:
    put_telnyx(ssm)
    calls = count_calls(ssm, "GetParameters")

    first = load_telnyx_config(ssm, PREFIX)
    second = load_telnyx_config(ssm, PREFIX + "/")  # same prefix, trailing slash or not

    assert first == second == TelnyxConfig(api_key=API_KEY, from_number=FROM, messaging_profile_id=PROFILE_ID)
    assert len(calls) == 1
    assert calls[0]["WithDecryption"] is True
    assert sorted(calls[0]["Names"]) == sorted(
        f"{PREFIX}/telnyx/{n}" for n in ("api_key", "messaging_profile_id", "from_number")
    )
    assert_secret_free(first)

    reset_telnyx_config_cache()
    load_telnyx_config(ssm, PREFIX)
    assert len(calls) == 2


def test_ssm_without_api_key_means_no_telnyx_and_is_cached_too(ssm: Any) -> None:
    put_telnyx(ssm, key=None)
    calls = count_calls(ssm, "GetParameters")
    assert load_telnyx_config(ssm, PREFIX) is None
    assert load_telnyx_config(ssm, PREFIX) is None
    assert len(calls) == 1


def test_ssm_messaging_profile_is_optional(ssm: Any) -> None:
    put_telnyx(ssm, profile=None)
    config = load_telnyx_config(ssm, PREFIX)
    assert config is not None and config.messaging_profile_id is None


def test_ssm_key_without_sender_is_a_fatal_misconfiguration(ssm: Any) -> None:
    put_telnyx(ssm, sender=None)
    with pytest.raises(FatalError) as caught:
        load_telnyx_config(ssm, PREFIX)
    assert caught.value.code == "telnyx_config_incomplete"
    assert_secret_free(*error_texts(caught.value))


def test_ssm_throttling_is_retryable_and_not_cached(aws_env: None) -> None:
    client = boto3.client("ssm", region_name=REGION)
    with Stubber(client) as stub:
        stub.add_client_error("get_parameters", "ThrottlingException", "Rate exceeded", 400)
        stub.add_response("get_parameters", {"Parameters": []})
        with pytest.raises(RetryableError) as caught:
            load_telnyx_config(client, PREFIX)
        assert caught.value.code == "ssm_ThrottlingException"
        assert load_telnyx_config(client, PREFIX) is None
        stub.assert_no_pending_responses()


def test_build_picks_telnyx_when_configured_without_building_sns(ssm: Any) -> None:
    put_telnyx(ssm)
    sns_factory = Mock(side_effect=AssertionError("SNS client must not be built"))
    ssm_factory = Mock(return_value=ssm)

    first = build_sms_provider(sns_factory, ssm_factory, PREFIX)
    second = build_sms_provider(sns_factory, ssm_factory, PREFIX)

    assert isinstance(first, TelnyxSmsProvider) and isinstance(second, TelnyxSmsProvider)
    assert first.name == "telnyx"
    assert ssm_factory.call_count == 1
    sns_factory.assert_not_called()
    assert_secret_free(first)


def test_build_falls_back_to_sns(ssm: Any) -> None:
    sns_client = boto3.client("sns", region_name=REGION)
    provider = build_sms_provider(lambda: sns_client, lambda: ssm, PREFIX)
    assert isinstance(provider, SnsSmsProvider)
    provider.send("+15551234567", "via sns", idempotency_key="k")
    assert ("+15551234567", "via sns") in sns_backends[DEFAULT_ACCOUNT_ID][REGION].sms_messages.values()


def test_build_against_the_fake_end_to_end(ssm: Any, fake: TelnyxFake) -> None:
    put_telnyx(ssm)
    provider = build_sms_provider(Mock(), lambda: ssm, PREFIX, telnyx_base_url=fake.base_url)
    result = provider.send("+15551234567", "through SSM config", idempotency_key="k")
    assert result.message_id == fake.sent_ids[0]
    assert fake.requests[0].headers["authorization"] == f"Bearer {API_KEY}"
