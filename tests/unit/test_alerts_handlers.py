"""The "sms" and "escalation" handlers, and the worker's `Deferred` path, over moto.

The clock is the test's (`FakeClock`), the SMS provider a recording fake, except in the last
section, which runs the real handlers from `build_handlers` against moto's SNS and SES.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from chalice.test import Client
from moto.core import DEFAULT_ACCOUNT_ID
from moto.ses.models import ses_backends
from moto.sns.models import sns_backends

from app import app
from chalicelib.alerts.incidents import IncidentIndex
from chalicelib.clock import iso, parse_iso
from chalicelib.errors import Deferred, FatalError, RetryableError
from chalicelib.jobs.model import Job
from chalicelib.services import Services

from .alerts_harness import (  # noqa: F401 - fixtures
    MEMBER,
    ORG,
    REGION,
    FakeClock,
    Parts,
    alert_payload,
    as_record,
    aws_env_fixture,
    clock_fixture,
    drain,
    parts_fixture,
    queue_depth,
    receive,
    svc_fixture,
)

pytestmark = pytest.mark.unit


def record_of(message: dict[str, Any], svc: Services, priority: str) -> SQSRecord:
    return SQSRecord(as_record(message, svc, priority))


def deliveries(parts: Parts, job: Job) -> list[dict[str, Any]]:
    return sorted(parts.get(job).deliveries, key=lambda d: d["attempt"])


# --- sending, and the delivery log --------------------------------------------------------------


def test_an_alert_is_sent_once_and_logged_with_a_masked_number(parts: Parts) -> None:
    job = parts.job("sms", alert_payload(), priority="critical")

    result = parts.run(job)

    assert parts.sms.sent == [("+15551230001", "Freezer 7 is at -2 C", f"{job.job_id}:sms")]
    assert result == {"provider": "sns", "message_id": "msg-0", "to": "+1555***0001", "delivery": "sms:1"}
    [entry] = deliveries(parts, job)
    assert entry["status"] == "sent"
    assert entry["provider_message_id"] == "msg-0"
    assert entry["to"] == "+1555***0001"
    assert (entry["job_id"], entry["org_id"], entry["user_id"], entry["provider"]) == (job.job_id, ORG, "u-1", "sns")
    assert entry["error_code"] is None
    assert "+15551230001" not in json.dumps(parts.get(job).to_api())


def test_a_retry_after_a_send_that_was_recorded_completes_without_sending_again(parts: Parts) -> None:
    """GIVEN attempt 1 sent the SMS and died before completing the job, WHEN attempt 2 runs,
    THEN it finds the provider's message id in the delivery log and sends nothing."""
    job = parts.job("sms", alert_payload())
    first = parts.start(job)
    parts.alerts(first)  # sent; the job is never completed (the Lambda timed out)
    parts.clock.advance(120)  # the lease ran out: the message comes back

    second = parts.start(job)
    result = parts.alerts(second)

    assert second.attempts == 2
    assert len(parts.sms.sent) == 1
    assert result["message_id"] == "msg-0"
    assert result["replayed"] is True
    assert [d["status"] for d in deliveries(parts, job)] == ["sent"]


def test_an_unconfirmed_send_is_sent_again_and_the_retry_names_it(parts: Parts) -> None:
    """A `pending` record without `sent`: the attempt died mid-send. Resend (an alert must go out)."""
    job = parts.job("sms", alert_payload())
    first = parts.start(job)
    parts.store.add_delivery(
        first, "sms:1", {"attempt_key": "sms:1", "channel": "sms", "attempt": 1, "status": "pending"}
    )
    parts.clock.advance(120)

    result = parts.alerts(parts.start(job))

    assert len(parts.sms.sent) == 1
    assert result["delivery"] == "sms:2"
    entries = deliveries(parts, job)
    assert [d["status"] for d in entries] == ["pending", "sent"]
    assert entries[1]["after_unconfirmed"] == ["sms:1"]


def test_a_failed_attempt_is_logged_with_its_error_code_and_the_retry_sends(parts: Parts) -> None:
    job = parts.job("sms", alert_payload())
    parts.sms.failures.append(RetryableError("sns_Throttling", "slow down"))

    with pytest.raises(RetryableError):
        parts.run(job)
    parts.store.mark_failed(parts.get(job), {"code": "sns_Throttling"}, parts.clock())
    result = parts.run(job)

    assert result is not None and result["delivery"] == "sms:2"
    assert [(d["status"], d["error_code"]) for d in deliveries(parts, job)] == [
        ("failed", "sns_Throttling"),
        ("sent", None),
    ]


# --- rate limit -----------------------------------------------------------------------------------


def test_a_second_alert_for_the_same_user_and_type_is_suppressed_not_sent(parts: Parts) -> None:
    first = parts.job("sms", alert_payload())
    second = parts.job("sms", alert_payload(message="again"))
    other_type = parts.job("sms", alert_payload(alert_type="door_open"))

    parts.run(first)
    suppressed = parts.run(second)
    parts.run(other_type)

    assert suppressed is not None
    assert suppressed["suppressed"] is True
    assert suppressed["reason"] == "rate_limited"
    assert suppressed["suppressed_by"] == first.job_id
    assert suppressed["window_s"] == 900
    assert [text for _, text, _ in parts.sms.sent] == ["Freezer 7 is at -2 C", "Freezer 7 is at -2 C"]
    assert parts.get(second).status == "completed"
    assert deliveries(parts, second) == []


def test_the_window_holder_that_retries_is_not_suppressed_by_itself(parts: Parts) -> None:
    job = parts.job("sms", alert_payload())
    parts.sms.failures.append(RetryableError("network_error", "down"))
    with pytest.raises(RetryableError):
        parts.run(job)
    parts.store.mark_failed(parts.get(job), {"code": "network_error"}, parts.clock())

    result = parts.run(job)

    assert result is not None and "suppressed" not in result
    assert len(parts.sms.sent) == 1


@pytest.mark.parametrize("error", [FatalError("telnyx_40300", "opted out"), RetryableError("network_error", "down")])
def test_an_alert_that_gives_up_frees_the_window_for_the_next_one(parts: Parts, error: Exception) -> None:
    job = parts.job("sms", alert_payload(), max_attempts=1)
    parts.sms.failures.append(error)
    with pytest.raises(type(error)):
        parts.run(job)

    result = parts.run(parts.job("sms", alert_payload()))

    assert result is not None and "suppressed" not in result
    assert len(parts.sms.sent) == 1


def test_a_generic_sms_job_has_no_rate_limit(parts: Parts) -> None:
    for _ in range(3):
        parts.run(parts.job("sms", {"phone_number": "+15551230009", "message": "hi"}))
    assert len(parts.sms.sent) == 3


# --- quiet hours ----------------------------------------------------------------------------------

CHICAGO_2330 = datetime(2026, 3, 2, 5, 30, tzinfo=UTC)  # 23:30 in Chicago (CST, UTC-6)
CHICAGO_0700_NEXT = datetime(2026, 3, 2, 13, 0, tzinfo=UTC)


def test_an_info_alert_inside_quiet_hours_is_deferred_to_the_end_of_the_window(parts: Parts) -> None:
    parts.put_recipient("u-1", "America/Chicago", "22:00", "07:00")
    parts.clock.now = CHICAGO_2330
    job = parts.job("sms", alert_payload(severity="info"), priority="normal")

    with pytest.raises(Deferred) as deferred:
        parts.alerts(parts.start(job))

    assert deferred.value.run_at == CHICAGO_0700_NEXT
    assert deferred.value.reason == "quiet_hours"
    assert deferred.value.decision is not None
    assert deferred.value.decision["until"] == iso(CHICAGO_0700_NEXT)
    assert deferred.value.decision["timezone"] == "America/Chicago"
    assert parts.sms.sent == []


@pytest.mark.parametrize("severity", ["warning", "critical"])
def test_warning_and_critical_alerts_go_during_quiet_hours(parts: Parts, severity: str) -> None:
    parts.put_recipient("u-1", "America/Chicago", "22:00", "07:00")
    parts.clock.now = CHICAGO_2330

    result = parts.run(parts.job("sms", alert_payload(severity=severity)))

    assert result is not None
    assert result["quiet_hours"]["decision"] == "bypassed"
    assert result["quiet_hours"]["severity"] == severity
    assert len(parts.sms.sent) == 1


@pytest.mark.parametrize(
    ("recipient", "expected"),
    [
        (("America/Chicago", "22:00", "07:00"), {"decision": "outside"}),  # 06:00 in Chicago: it is noon UTC
        (("America/Chicago", None, None), None),  # no quiet hours
        (("Not/AZone", "22:00", "07:00"), None),  # unreadable: never holds an alert back
        (None, None),  # no recipient record at all
    ],
)
def test_info_alerts_outside_quiet_hours_go_at_once(
    parts: Parts, recipient: tuple[str, str | None, str | None] | None, expected: dict[str, str] | None
) -> None:
    if recipient is not None:
        parts.put_recipient("u-1", *recipient)
    parts.clock.now = datetime(2026, 3, 2, 13, 30, tzinfo=UTC)  # 07:30 in Chicago

    result = parts.run(parts.job("sms", alert_payload(severity="info")))

    assert result is not None
    if expected is None:
        assert "quiet_hours" not in result
    else:
        assert result["quiet_hours"]["decision"] == expected["decision"]
    assert len(parts.sms.sent) == 1


def test_through_the_worker_a_deferred_alert_waits_scheduled_then_goes_with_the_decision(
    parts: Parts, svc: Services
) -> None:
    """The worker turns Deferred into `scheduled` at the window's end (attempt not counted),
    sends the next hop, and the alert goes out when the window is over."""
    parts.put_recipient("u-1", "America/Chicago", "22:00", "07:00")
    parts.clock.now = CHICAGO_2330
    job = parts.job("sms", alert_payload(severity="info"), priority="normal")
    [message] = receive(svc, "normal")

    outcome = parts.worker.process(record_of(message, svc, "normal"), "normal")

    waiting = parts.get(job)
    assert outcome.status == "deferred"
    assert (waiting.status, waiting.attempts, waiting.run_at) == ("scheduled", 0, CHICAGO_0700_NEXT)
    assert waiting.result == {"deferred": waiting.meta["deferral"]}
    assert waiting.result["deferred"]["reason"] == "quiet_hours"
    assert queue_depth(svc, "normal") == 2  # the next hop (and the handled message, not deleted here)

    parts.clock.now = CHICAGO_0700_NEXT - timedelta(seconds=0.5)  # the worker may run it a little early
    outcome = parts.worker.process(record_of(message, svc, "normal"), "normal")

    done = parts.get(job)
    assert outcome.status == "completed"
    assert (done.status, done.attempts) == ("completed", 1)
    assert done.result is not None
    assert done.result["quiet_hours"]["decision"] == "deferred"
    assert done.result["quiet_hours"]["until"] == iso(CHICAGO_0700_NEXT)
    assert len(parts.sms.sent) == 1


def test_reschedule_applies_only_to_the_attempt_that_is_running(parts: Parts) -> None:
    """A worker whose lease was taken over must not move the job: the conditions say so."""
    job = parts.job("sms", alert_payload())
    later = parts.clock() + timedelta(hours=1)
    assert parts.store.reschedule(job, later) is None  # queued, not running

    running = parts.start(job)
    parts.clock.advance(120)
    taken_over = parts.start(job)  # the lease ran out: another worker's attempt 2

    assert parts.store.reschedule(running, later) is None
    moved = parts.store.reschedule(taken_over, later, {"reason": "quiet_hours"})
    assert moved is not None
    assert (moved.status, moved.attempts, moved.run_at) == ("scheduled", 1, later)
    assert moved.meta == {"deferral": {"reason": "quiet_hours"}}


# --- throughput cap -------------------------------------------------------------------------------


def test_over_the_providers_cap_an_alert_is_delayed_not_dropped(parts: Parts, svc: Services) -> None:
    rate = svc.settings.sms_per_second_sns
    for _ in range(rate):  # someone else emptied the bucket this second
        assert parts.bucket.take("sms:sns", rate, rate) is None
    job = parts.job("sms", alert_payload(), priority="critical")
    [message] = receive(svc, "critical")

    outcome = parts.worker.process(record_of(message, svc, "critical"), "critical")

    waiting = parts.get(job)
    assert outcome.status == "deferred"
    assert waiting.status == "scheduled"
    assert waiting.attempts == 0  # throttling uses up no attempt
    assert 0 < (waiting.run_at - parts.clock()).total_seconds() <= 1
    assert parts.sms.sent == []

    parts.clock.advance(1)
    assert parts.worker.process(record_of(message, svc, "critical"), "critical").status == "completed"
    assert len(parts.sms.sent) == 1


def test_info_alerts_leave_a_reserve_that_a_critical_alert_can_use(parts: Parts, svc: Services) -> None:
    rate = svc.settings.sms_per_second_sns
    infos = [parts.job("sms", alert_payload(user_id=f"u-{n}", severity="info"), priority="normal") for n in range(rate)]
    outcomes = []
    for job in infos:
        try:
            parts.run(job)
            outcomes.append("sent")
        except Deferred:
            outcomes.append("deferred")
    assert outcomes.count("sent") == rate - 5  # 5 of 20 tokens are kept for urgent work

    parts.run(parts.job("sms", alert_payload(user_id="u-urgent"), priority="critical"))

    assert parts.sms.sent[-1][0] == "+15551230001"
    assert len(parts.sms.sent) == rate - 4


# --- escalations ----------------------------------------------------------------------------------

CONTACT = {"phone_number": "+15557654321", "email": "oncall@example.com"}


def escalation(parts: Parts, contact: dict[str, str] | None = None, **kw: Any) -> Job:
    payload = {
        "incident_id": "inc-1",
        "level": 1,
        "repeat": 0,
        "message": "Incident inc-1, level 1",
        "contact": contact or CONTACT,
    }
    return parts.job("escalation", payload, job_id="incident:inc-1:level:1:repeat:0", priority="critical", **kw)


def test_an_escalation_texts_and_emails_the_contact(parts: Parts, svc: Services) -> None:
    job = escalation(parts)

    result = parts.run(job)

    assert result is not None
    assert set(result["channels"]) == {"sms", "email"}
    assert parts.sms.sent == [("+15557654321", "Incident inc-1, level 1", f"{job.job_id}:sms")]
    [mail] = ses_backends[DEFAULT_ACCOUNT_ID][REGION].sent_messages
    assert mail.destinations["ToAddresses"] == ["oncall@example.com"]
    assert result["channels"]["email"]["message_id"] == mail.id
    assert sorted((d["channel"], d["status"], d["to"]) for d in deliveries(parts, job)) == [
        ("email", "sent", "o*****@example.com"),
        ("sms", "sent", "+1555***4321"),
    ]


def test_an_escalation_ignores_quiet_hours_and_the_rate_limit(parts: Parts) -> None:
    parts.clock.now = CHICAGO_2330
    parts.put_recipient("u-1", "America/Chicago", "22:00", "07:00")
    parts.run(parts.job("sms", alert_payload(phone_number="+15557654321", severity="critical")))

    result = parts.run(escalation(parts, {"phone_number": "+15557654321"}))

    assert result is not None and "sms" in result["channels"]
    assert len(parts.sms.sent) == 2


def test_a_retry_after_the_sms_went_out_sends_only_the_email(parts: Parts) -> None:
    job = escalation(parts, {"phone_number": "+15557654321", "email": "unverified@example.com"})
    # moto's SES takes any recipient of a verified sender: the email fails once by hand instead.
    failures = [RetryableError("ses_throttling", "slow down")]
    real_deliver = parts.courier.deliver

    def deliver_failing_email_once(*args: Any, **kw: Any) -> dict[str, Any]:
        if args[2] == "email" and failures:
            raise failures.pop()
        return real_deliver(*args, **kw)

    parts.courier.deliver = deliver_failing_email_once  # type: ignore[method-assign]
    with pytest.raises(RetryableError) as failed:
        parts.run(job)
    parts.store.mark_failed(parts.get(job), failed.value.as_dict(), parts.clock())

    result = parts.run(job)

    assert result is not None
    assert result["channels"]["sms"]["replayed"] is True
    assert "replayed" not in result["channels"]["email"]
    assert len(parts.sms.sent) == 1


def test_on_its_last_attempt_an_escalation_that_reached_the_contact_once_completes(parts: Parts) -> None:
    job = escalation(parts, max_attempts=1)
    real_deliver = parts.courier.deliver

    def deliver(*args: Any, **kw: Any) -> dict[str, Any]:
        if args[2] == "email":
            raise RetryableError("ses_throttling", "slow down")
        return real_deliver(*args, **kw)

    parts.courier.deliver = deliver  # type: ignore[method-assign]
    result = parts.run(job)

    assert result is not None
    assert set(result["channels"]) == {"sms"}
    assert result["failed"]["email"]["code"] == "ses_throttling"


def test_an_escalation_of_an_acknowledged_incident_stands_down(parts: Parts, svc: Services) -> None:
    """Even one that cancelling could not stop (it was `failed`, waiting for its retry)."""
    job = escalation(parts)
    parts.clock.advance(10)
    IncidentIndex(svc.ddb, svc.settings.table_name).acknowledge(ORG, "inc-1", parts.clock(), parts.clock())

    result = parts.run(job)

    assert result == {"skipped": True, "reason": "incident_acknowledged", "acknowledged_at": iso(parts.clock())}
    assert parts.sms.sent == []


def test_an_escalation_created_after_an_acknowledgement_still_fires(parts: Parts, svc: Services) -> None:
    IncidentIndex(svc.ddb, svc.settings.table_name).acknowledge(ORG, "inc-1", parts.clock(), parts.clock())
    parts.clock.advance(1)

    result = parts.run(escalation(parts))

    assert result is not None and "sms" in result["channels"]


# --- the real handlers, end to end over moto ------------------------------------------------------


def test_notify_through_the_api_and_the_worker_sends_one_sms_on_sns(svc: Services) -> None:
    """GIVEN the API and the real worker (SNS on moto) WHEN an alert is notified and its queue
    drained THEN one SMS went out, and the job is completed with SNS's message id."""
    with Client(app) as client:
        reply = client.http.post(
            "/v1/alerts/freezer-7/notify",
            headers={"Authorization": f"Bearer {MEMBER}", "Content-Type": "application/json"},
            body=json.dumps({k: v for k, v in alert_payload().items() if k != "alert_id"}),
        )
        assert reply.status_code == 202
        job_id = json.loads(reply.body)["job_id"]

        assert drain(svc, svc.worker, "critical") == 1

        job = json.loads(client.http.get(f"/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {MEMBER}"}).body)
    sent = list(sns_backends[DEFAULT_ACCOUNT_ID][REGION].sms_messages.items())
    assert [(phone, text) for _, (phone, text) in sent] == [("+15551230001", "Freezer 7 is at -2 C")]
    assert job["status"] == "completed"
    assert job["result"]["message_id"] == sent[0][0]
    assert [(d["status"], d["provider_message_id"]) for d in job["deliveries"]] == [("sent", sent[0][0])]
    assert parse_iso(job["finished_at"]) >= parse_iso(job["started_at"])


def test_an_escalation_through_the_worker_texts_the_contact_on_sns(svc: Services) -> None:
    with Client(app) as client:
        reply = client.http.post(
            "/v1/incidents/inc-3/escalations",
            headers={"Authorization": f"Bearer {MEMBER}", "Content-Type": "application/json"},
            body=json.dumps({"level": 2, "repeat": 0, "delay_seconds": 0, "contact": {"phone_number": "+15550009999"}}),
        )
        assert reply.status_code == 201

        drain(svc, svc.worker, "critical")

    job = svc.store.get(ORG, "incident:inc-3:level:2:repeat:0")
    assert job is not None and job.status == "completed"
    [(phone, text)] = sns_backends[DEFAULT_ACCOUNT_ID][REGION].sms_messages.values()
    assert phone == "+15550009999"
    assert "inc-3" in text and "level 2" in text.lower()


def test_a_cancelled_escalation_never_runs(parts: Parts, svc: Services) -> None:
    job = escalation(parts)
    parts.store.cancel(ORG, job.job_id)

    drain(svc, parts.worker, "critical")

    assert parts.get(job).status == "cancelled"
    assert parts.sms.sent == []
