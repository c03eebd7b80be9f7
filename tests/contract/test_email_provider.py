"""Contract tests for SesEmailProvider: SES on moto always, SES on LocalStack when it answers.

The shared cases run against both backends (LocalStack ones are marked ``integration`` and
skipped when LOCALSTACK_ENDPOINT, default http://127.0.0.1:4566, does not answer). Error
classification uses a Mock(spec=...) client raising botocore's own exceptions, and the address
check is covered at the end.
"""

from __future__ import annotations

import json
import os
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from unittest.mock import Mock

import boto3  # type: ignore[import-untyped, unused-ignore]
import pytest
from botocore.exceptions import (  # type: ignore[import-untyped, unused-ignore]
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
    ReadTimeoutError,
)
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID  # type: ignore[attr-defined, unused-ignore]
from moto.ses.models import ses_backends

from chalicelib.errors import FatalError, JobError, RetryableError
from chalicelib.providers.email import EmailMessage, SesEmailProvider, check_email
from tests.support.cloud import LOCALSTACK as CLOUD_ENDPOINT

pytestmark = [pytest.mark.contract, pytest.mark.enable_socket]

REGION = "us-east-1"
LOCALSTACK = os.environ.get("LOCALSTACK_ENDPOINT", CLOUD_ENDPOINT)


@dataclass
class Harness:
    client: Any
    source: str
    # Reads back what the backend recorded for a MessageId: {"to", "subject", "text", "html"}.
    read_back: Callable[[str], dict[str, Any]]


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def _ses_moto() -> Iterator[Harness]:
    with mock_aws():
        client = boto3.client("ses", region_name=REGION)
        source = "alerts@herald.example.com"
        client.verify_email_identity(EmailAddress=source)

        def read_back(message_id: str) -> dict[str, Any]:
            [sent] = [m for m in ses_backends[DEFAULT_ACCOUNT_ID][REGION].sent_messages if m.id == message_id]
            # moto keeps one body part: the HTML one when present, else the text one.
            return {"to": sent.destinations["ToAddresses"], "subject": sent.subject, "body": sent.body}

        yield Harness(client, source, read_back)


def _ses_localstack() -> Iterator[Harness]:
    try:
        urllib.request.urlopen(f"{LOCALSTACK}/_localstack/health", timeout=1).close()
    except OSError:
        pytest.skip(f"LocalStack is not reachable at {LOCALSTACK}")
    client = boto3.client("ses", region_name=REGION, endpoint_url=LOCALSTACK)
    source = f"alerts-{uuid.uuid4().hex[:12]}@herald.example.com"
    client.verify_email_identity(EmailAddress=source)

    def read_back(message_id: str) -> dict[str, Any]:
        url = f"{LOCALSTACK}/_aws/ses?email={urllib.parse.quote(source)}"
        with urllib.request.urlopen(url, timeout=5) as response:
            messages = json.load(response)["messages"]
        [sent] = [m for m in messages if m["Id"] == message_id]
        return {
            "to": sent["Destination"]["ToAddresses"],
            "subject": sent["Subject"],
            "text": sent["Body"]["text_part"],
            "html": sent["Body"]["html_part"],
            "source": sent["Source"],
        }

    yield Harness(client, source, read_back)


HARNESSES = {"ses-moto": _ses_moto, "ses-localstack": _ses_localstack}


@pytest.fixture(
    params=[
        "ses-moto",
        pytest.param("ses-localstack", marks=pytest.mark.integration),
    ]
)
def harness(request: pytest.FixtureRequest, aws_env: None) -> Iterator[Harness]:
    if request.param.endswith("localstack"):
        request.getfixturevalue("local_cloud")  # the project's fixture starts the cloud if needed
    yield from HARNESSES[request.param]()


# --- shared contract ----------------------------------------------------------------------------


def test_send_returns_the_ses_message_id_and_the_mail_is_recorded(harness: Harness) -> None:
    # GIVEN a provider with a verified sender
    provider = SesEmailProvider(harness.client, harness.source)
    msg = EmailMessage(
        to=["oncall@example.com", "lead@example.org"],
        subject="Incident inc-1 escalated to level 2",
        text="Incident inc-1 needs you.",
        html="<p>Incident <b>inc-1</b> needs you.</p>",
    )
    # WHEN the message is sent
    message_id = provider.send(msg, idempotency_key="org-1:job-42")
    # THEN SES returns its id and recorded the mail
    assert isinstance(message_id, str) and message_id
    sent = harness.read_back(message_id)
    assert sent["to"] == ["oncall@example.com", "lead@example.org"]
    assert sent["subject"] == msg.subject
    if "text" in sent:  # LocalStack keeps both parts
        assert sent["text"] == msg.text
        assert sent["html"] == msg.html
        assert sent["source"] == harness.source
    else:  # moto keeps the HTML part
        assert sent["body"] == msg.html


def test_text_only_mail(harness: Harness) -> None:
    provider = SesEmailProvider(harness.client, harness.source)
    message_id = provider.send(
        EmailMessage(to=["oncall@example.com"], subject="Daily digest", text="Nothing happened. ✓"),
        idempotency_key="digest:daily:2026-11-26",
    )
    sent = harness.read_back(message_id)
    assert sent.get("text", sent.get("body")) == "Nothing happened. ✓"
    if "html" in sent:
        assert sent["html"] is None


def test_an_unverified_sender_is_fatal(harness: Harness) -> None:
    provider = SesEmailProvider(harness.client, harness.source)
    msg = EmailMessage(to=["oncall@example.com"], subject="s", text="t", source="nobody@unverified.example.net")
    with pytest.raises(FatalError) as caught:
        provider.send(msg, idempotency_key="k")
    assert caught.value.code == "ses_message_rejected"


def test_the_message_source_overrides_the_default_sender(harness: Harness) -> None:
    other = f"digests-{uuid.uuid4().hex[:8]}@herald.example.com"
    harness.client.verify_email_identity(EmailAddress=other)
    provider = SesEmailProvider(harness.client, harness.source)
    message_id = provider.send(
        EmailMessage(to=["a@example.com"], subject="s", text="t", source=other), idempotency_key="k"
    )
    assert message_id


# --- validation before calling SES ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("msg", "field"),
    [
        (EmailMessage(to=[], subject="s", text="t"), "to"),
        (EmailMessage(to=["not-an-address"], subject="s", text="t"), "to[0]"),
        (EmailMessage(to=["a@example.com", "b@"], subject="s", text="t"), "to[1]"),
        (EmailMessage(to=[f"u{i}@example.com" for i in range(51)], subject="s", text="t"), "to"),
        (EmailMessage(to=["a@example.com"], subject="", text="t"), "subject"),
        (EmailMessage(to=["a@example.com"], subject="a\r\nBcc: victim@example.com", text="t"), "subject"),
        (EmailMessage(to=["a@example.com"], subject="s", text="t", source="bad"), "source"),
    ],
)
def test_invalid_messages_are_fatal_without_calling_ses(msg: EmailMessage, field: str) -> None:
    client = Mock(spec=["send_email"])
    with pytest.raises(FatalError) as caught:
        SesEmailProvider(client, "alerts@herald.example.com").send(msg, idempotency_key="k")
    assert caught.value.code == "invalid_email"
    assert field in caught.value.message
    client.send_email.assert_not_called()


def test_the_provider_refuses_a_malformed_default_sender() -> None:
    with pytest.raises(ValueError):
        SesEmailProvider(Mock(spec=["send_email"]), "herald")


def test_the_request_carries_both_parts_and_a_safe_idempotency_tag() -> None:
    client = Mock(spec=["send_email"])
    client.send_email.return_value = {"MessageId": "0100-abc"}
    provider = SesEmailProvider(client, "alerts@herald.example.com")
    message_id = provider.send(
        EmailMessage(to=["a@example.com"], subject="S", text="T", html="<p>H</p>"),
        idempotency_key="incident:inc 1:level:2/é",
    )
    assert message_id == "0100-abc"
    kwargs = client.send_email.call_args.kwargs
    assert kwargs["Source"] == "alerts@herald.example.com"
    assert kwargs["Destination"] == {"ToAddresses": ["a@example.com"]}
    assert kwargs["Message"]["Body"]["Text"]["Data"] == "T"
    assert kwargs["Message"]["Body"]["Html"]["Data"] == "<p>H</p>"
    assert kwargs["Tags"] == [{"Name": "herald-idempotency-key", "Value": "incident_inc_1_level_2__"}]


# --- error classification (botocore's real exception types) ---------------------------------------


def _client_error(code: str, status: int, message: str = "boom") -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "SendEmail",
    )


@pytest.mark.parametrize(
    ("error", "expected_type", "expected_code"),
    [
        (_client_error("MessageRejected", 400), FatalError, "ses_message_rejected"),
        (
            _client_error("MailFromDomainNotVerifiedException", 400),
            FatalError,
            "ses_mail_from_domain_not_verified",
        ),
        (_client_error("InvalidParameterValue", 400), FatalError, "ses_invalid_parameter_value"),
        (
            _client_error("ConfigurationSetDoesNotExist", 400),
            FatalError,
            "ses_configuration_set_does_not_exist",
        ),
        (_client_error("AccessDenied", 403), FatalError, "ses_access_denied"),
        (_client_error("SomethingNew", 400), FatalError, "ses_something_new"),
        (
            _client_error("Throttling", 400, "Maximum sending rate exceeded."),
            RetryableError,
            "ses_throttling",
        ),
        (_client_error("ThrottlingException", 400), RetryableError, "ses_throttling"),
        (_client_error("ServiceUnavailable", 503), RetryableError, "ses_service_unavailable"),
        (_client_error("InternalFailure", 500), RetryableError, "ses_internal_failure"),
        (_client_error("SomethingNew", 502), RetryableError, "ses_something_new"),
        (
            EndpointConnectionError(endpoint_url="https://email.us-east-1.amazonaws.com"),
            RetryableError,
            "connection_error",
        ),
        (
            ConnectTimeoutError(endpoint_url="https://email.us-east-1.amazonaws.com"),
            RetryableError,
            "timeout",
        ),
        (ReadTimeoutError(endpoint_url="https://email.us-east-1.amazonaws.com"), RetryableError, "timeout"),
        (NoCredentialsError(), RetryableError, "ses_client_error"),
        (ParamValidationError(report="bad"), FatalError, "invalid_email"),
    ],
)
def test_ses_errors_are_classified(error: Exception, expected_type: type[JobError], expected_code: str) -> None:
    client = Mock(spec=["send_email"])
    client.send_email.side_effect = error
    provider = SesEmailProvider(client, "alerts@herald.example.com")
    with pytest.raises(expected_type) as caught:
        provider.send(EmailMessage(to=["a@example.com"], subject="s", text="t"), idempotency_key="k")
    assert caught.value.code == expected_code
    assert caught.value.__cause__ is error


# --- the address check the API shares -------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "a@example.com",
        "first.last+tag@sub.example.co.uk",
        "o'brien@example.ie",
        "x_y-z@ex-ample.io",
        "user@bücher.example",
        "user@xn--bcher-kva.example",
        "UPPER@EXAMPLE.COM",
    ],
)
def test_check_email_accepts_ordinary_addresses(address: str) -> None:
    assert check_email(address, "email") == []


@pytest.mark.parametrize(
    "value",
    [
        None,
        42,
        "",
        "plainaddress",
        "@example.com",
        "user@",
        "user@localhost",
        "user@@example.com",
        "a@b@example.com",
        "user@example",
        "user@.example.com",
        "user@example..com",
        "user@-example.com",
        "user@example-.com",
        "user@example.c",
        "user@example.123",
        ".user@example.com",
        "user.@example.com",
        "us..er@example.com",
        "us er@example.com",
        '"quoted"@example.com',
        "user@[10.0.0.1]",
        "user@example.com\r\nBcc: victim@example.com",
        "jöhn@example.com",
        "x" * 65 + "@example.com",
        "a@" + "b" * 250 + ".com",
    ],
)
def test_check_email_refuses_the_rest(value: object) -> None:
    # One problem, under the caller's field name so the API can point at the right place.
    [problem] = check_email(value, "contact.email")
    assert problem.field == "contact.email"
    assert "email address" in problem.problem
