"""Issue 5's acceptance points against the deployed local stack (API Gateway -> Lambda -> SQS ->
worker Lambdas -> SNS/DynamoDB Local), read back from LocalStack's SNS record.

Every test texts its own numbers (uuid-derived), so tests sharing the stack never see each
other's SMS. Polling with deadlines, never fixed sleeps, except where the point is that
nothing happens (then we wait past the moment it would have).
"""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chalicelib.clock import parse_iso
from tests.support.api import Api, wait_for
from tests.support.cloud import LocalCloud

pytestmark = pytest.mark.integration


def new_number() -> str:
    """A fresh E.164 number: +1555 and 7 digits from a uuid."""
    return "+1555" + str(uuid.uuid4().int % 10**7).zfill(7)


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def notify(
    api: Api,
    phone: str,
    *,
    user_id: str,
    severity: str = "critical",
    alert_type: str = "temperature_high",
    message: str = "Freezer 7 is at -2 C",
) -> dict[str, Any]:
    reply = api.post(
        f"/v1/alerts/{new_id('alert')}/notify",
        {"user_id": user_id, "phone_number": phone, "message": message, "alert_type": alert_type, "severity": severity},
    )
    assert reply.status == 202, reply
    return dict(reply.body)


def test_a_notify_sends_exactly_one_sms_and_the_job_keeps_the_message_id(member: Api, local_cloud: LocalCloud) -> None:
    phone, text = new_number(), f"Freezer 7 is at -2 C ({uuid.uuid4().hex[:6]})"

    job = notify(member, phone, user_id=new_id("user"), message=text)
    done = member.wait_for_job(job["job_id"], {"completed", "dead"})

    assert done["status"] == "completed", done
    [sms] = wait_for(lambda: local_cloud.sms_messages(phone), 30, f"an SMS to {phone}")
    assert (sms["PhoneNumber"], sms["Message"]) == (phone, text)
    assert done["result"]["message_id"] == sms["MessageId"]
    assert done["result"]["provider"] == "sns"
    assert [(d["status"], d["provider_message_id"]) for d in done["deliveries"]] == [("sent", sms["MessageId"])]
    time.sleep(2)  # nothing else trickles in
    assert len(local_cloud.sms_messages(phone)) == 1


def test_five_concurrent_notifies_for_one_user_and_alert_type_send_one_sms(
    member: Api, local_cloud: LocalCloud
) -> None:
    phone, user = new_number(), new_id("user")

    with ThreadPoolExecutor(max_workers=5) as pool:
        jobs = list(pool.map(lambda _: notify(member, phone, user_id=user), range(5)))
    finished = [member.wait_for_job(job["job_id"], {"completed", "dead"}) for job in jobs]

    assert [job["status"] for job in finished] == ["completed"] * 5, finished
    suppressed = [job for job in finished if (job["result"] or {}).get("suppressed")]
    assert len(suppressed) == 4
    assert all(job["result"]["reason"] == "rate_limited" for job in suppressed)
    time.sleep(2)
    assert len(local_cloud.sms_messages(phone)) == 1


def test_quiet_hours_defer_an_info_alert_to_the_window_end_but_a_warning_goes(
    member: Api, local_cloud: LocalCloud
) -> None:
    """GIVEN a recipient (PUT /v1/recipients) inside quiet hours, WHEN an info and a warning alert
    are notified, THEN the info one waits `scheduled` until the window ends, the warning one goes."""
    user, phone = new_id("user"), new_number()
    now = datetime.now(UTC)
    ends = (now + timedelta(hours=2)).replace(second=0, microsecond=0)
    window = {"start": (now - timedelta(hours=1)).strftime("%H:%M"), "end": ends.strftime("%H:%M")}
    reply = member.put(
        f"/v1/recipients/{user}",
        {
            "email": f"{user}@example.com",
            "phone_number": phone,
            "timezone": "UTC",
            "digests": [],
            "quiet_hours": window,
        },
    )
    assert reply.status == 201, reply

    info = notify(member, phone, user_id=user, severity="info", alert_type="door_open")
    warning = notify(member, phone, user_id=user, severity="warning", alert_type="temperature_high")

    waiting = wait_for(
        lambda: (
            (job := member.get(f"/v1/jobs/{info['job_id']}").body)["status"] == "scheduled" and job["result"] and job
        ),
        60,
        "the info alert to be deferred",
    )
    assert parse_iso(waiting["run_at"]) == ends
    assert waiting["attempts"] == 0
    assert waiting["result"]["deferred"]["reason"] == "quiet_hours"
    sent = member.wait_for_job(warning["job_id"], {"completed", "dead"})
    assert sent["status"] == "completed", sent
    assert sent["result"]["quiet_hours"]["decision"] == "bypassed"
    [sms] = wait_for(lambda: local_cloud.sms_messages(phone), 30, f"an SMS to {phone}")
    assert sms["MessageId"] == sent["result"]["message_id"]
    assert member.delete(f"/v1/jobs/{info['job_id']}").status == 200  # leave nothing to fire later
    assert len(local_cloud.sms_messages(phone)) == 1


def escalation_body(phone: str, delay: int, level: int = 1) -> dict[str, Any]:
    return {"level": level, "repeat": 0, "delay_seconds": delay, "contact": {"phone_number": phone}}


def test_the_same_escalation_posted_twice_is_201_then_200_and_one_job(member: Api) -> None:
    incident, phone = new_id("inc"), new_number()

    first = member.post(f"/v1/incidents/{incident}/escalations", escalation_body(phone, 600))
    again = member.post(f"/v1/incidents/{incident}/escalations", escalation_body(phone, 600))

    assert (first.status, again.status) == (201, 200), (first, again)
    assert first.body["job_id"] == again.body["job_id"] == f"incident:{incident}:level:1:repeat:0"
    assert again.body["created_at"] == first.body["created_at"]
    listed = member.get("/v1/jobs?type=escalation&limit=100").body["items"]
    assert [job["job_id"] for job in listed].count(first.body["job_id"]) == 1
    assert member.delete(f"/v1/incidents/{incident}/escalations").body == {"cancelled": [first.body["job_id"]]}


def test_an_acknowledged_incident_sends_no_sms_after_the_delay(member: Api, local_cloud: LocalCloud) -> None:
    incident, phone = new_id("inc"), new_number()
    created = [
        member.post(f"/v1/incidents/{incident}/escalations", escalation_body(phone, 3, level)).body for level in (1, 2)
    ]

    reply = member.delete(f"/v1/incidents/{incident}/escalations")

    assert reply.status == 200
    assert sorted(reply.body["cancelled"]) == sorted(job["job_id"] for job in created)
    time.sleep(8)  # well past the 3 s delay and a worker poll
    assert local_cloud.sms_messages(phone) == []
    for job in created:
        assert member.get(f"/v1/jobs/{job['job_id']}").body["status"] == "cancelled"


def test_an_unacknowledged_escalation_fires_after_its_delay(member: Api, local_cloud: LocalCloud) -> None:
    incident, phone = new_id("inc"), new_number()

    job = member.post(f"/v1/incidents/{incident}/escalations", escalation_body(phone, 3)).body
    done = member.wait_for_job(job["job_id"], {"completed", "dead"}, timeout=60)

    assert done["status"] == "completed", done
    [sms] = wait_for(lambda: local_cloud.sms_messages(phone), 30, f"an SMS to {phone}")
    assert incident in sms["Message"]
    assert done["result"]["channels"]["sms"]["message_id"] == sms["MessageId"]


def test_an_escalation_to_an_email_contact_sends_one_email(member: Api, local_cloud: LocalCloud) -> None:
    incident = new_id("inc")
    address = f"{incident}@example.com"

    job = member.post(
        f"/v1/incidents/{incident}/escalations",
        {"level": 3, "repeat": 1, "delay_seconds": 0, "contact": {"email": address}},
    ).body
    done = member.wait_for_job(job["job_id"], {"completed", "dead"})

    assert done["status"] == "completed", done
    mails = [m for m in local_cloud.emails() if address in m["Destination"]["ToAddresses"]]
    assert len(mails) == 1
    assert incident in mails[0]["Subject"] and "level 3" in mails[0]["Subject"].lower()
    assert done["result"]["channels"]["email"]["message_id"] == mails[0]["Id"]


def test_a_1200_second_escalation_is_scheduled_with_its_run_at(member: Api) -> None:
    incident = new_id("inc")
    job = member.post(f"/v1/incidents/{incident}/escalations", escalation_body(new_number(), 1200)).body

    time.sleep(2)  # the worker has seen its first hop by now: it must still be waiting
    seen = member.get(f"/v1/jobs/{job['job_id']}").body

    assert seen["status"] == "scheduled"
    assert parse_iso(seen["run_at"]) - parse_iso(seen["created_at"]) == timedelta(seconds=1200)
    member.delete(f"/v1/incidents/{incident}/escalations")  # leave nothing to fire in 20 minutes


def test_a_critical_alert_behind_200_queued_info_alerts_completes_before_most_of_them(member: Api) -> None:
    """Each severity has its own queue and worker, and info alerts leave part of the provider's
    throughput to urgent ones: the critical alert does not wait for the backlog to drain."""
    run = uuid.uuid4().hex[:8]
    with ThreadPoolExecutor(max_workers=16) as pool:
        infos = list(
            pool.map(lambda n: notify(member, new_number(), user_id=f"backlog-{run}-{n}", severity="info"), range(200))
        )
    critical = notify(member, new_number(), user_id=f"urgent-{run}", severity="critical")

    done = member.wait_for_job(critical["job_id"], {"completed", "dead"}, timeout=60)
    assert done["status"] == "completed", done
    finished = [member.wait_for_job(job["job_id"], {"completed", "dead"}, timeout=300) for job in infos]

    assert all(job["status"] == "completed" for job in finished)
    later = [job for job in finished if job["finished_at"] > done["finished_at"]]
    assert len(later) > len(finished) / 2, f"only {len(later)} of 200 info alerts finished after the critical one"
