"""The alert and escalation routes through Chalice's test client, over moto.

GIVEN a member token of one organization, WHEN it calls the routes, THEN the contract's answers:
validation details per field, severity -> priority, escalation ids that make a repeat a 200,
and an acknowledgement that cancels every pending escalation of the incident.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from chalice.test import Client

from app import app
from chalicelib.clock import parse_iso
from chalicelib.services import Services

from .alerts_harness import MEMBER, OPERATOR, ORG, OTHER_MEMBER, aws_env_fixture, body, queue_depth, svc_fixture  # noqa: F401

pytestmark = pytest.mark.unit

NOTIFY = {
    "user_id": "u-42",
    "phone_number": "+15551234567",
    "message": "Freezer 7 is at -2 C",
    "alert_type": "temperature_high",
    "severity": "critical",
}
ESCALATION = {"level": 1, "repeat": 0, "delay_seconds": 60, "contact": {"phone_number": "+15557654321"}}


@pytest.fixture
def client(svc: Services) -> Iterator[Client]:
    with Client(app) as test_client:
        yield test_client


def call(client: Client, method: str, path: str, payload: Any = None, token: str = MEMBER) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    data = json.dumps(payload) if payload is not None else None
    reply = getattr(client.http, method.lower())(path, headers=headers, body=data)
    return reply.status_code, body(reply)


def details(answer: Any) -> dict[str, str]:
    return {d["field"]: d["problem"] for d in answer["error"]["details"]}


def nothing_created(svc: Services) -> bool:
    jobs, _ = svc.store.list(ORG)
    return not jobs and all(queue_depth(svc, p) == 0 for p in ("critical", "high", "normal", "low"))


# --- notify -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("severity", "priority"), [("critical", "critical"), ("warning", "high"), ("info", "normal")])
def test_notify_answers_202_with_a_queued_sms_job_on_the_severitys_queue(
    client: Client, svc: Services, severity: str, priority: str
) -> None:
    status, job = call(client, "POST", "/v1/alerts/freezer-7/notify", {**NOTIFY, "severity": severity})

    assert status == 202, job
    assert job["type"] == "sms"
    assert job["status"] == "queued"
    assert job["priority"] == priority
    assert job["org_id"] == ORG
    assert job["max_attempts"] == 5
    assert queue_depth(svc, priority) == 1
    stored = svc.store.get(ORG, job["job_id"])
    assert stored is not None
    assert stored.payload == {**NOTIFY, "severity": severity, "alert_id": "freezer-7"}
    assert stored.backoff_seconds == 2


def test_notify_reports_every_missing_field(client: Client, svc: Services) -> None:
    status, answer = call(client, "POST", "/v1/alerts/a-1/notify", {})

    assert status == 400
    assert answer["error"]["code"] == "validation_error"
    assert set(details(answer)) == {"user_id", "phone_number", "message", "alert_type", "severity"}
    assert all(problem == "is required" for problem in details(answer).values())
    assert nothing_created(svc)


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("phone_number", "5551234567", "E.164"),
        ("phone_number", "+1 555 123 4567", "E.164"),
        ("phone_number", "+05551234567", "E.164"),
        ("phone_number", 15551234567, "E.164"),
        ("message", "", "at least 1 characters"),
        ("message", "x" * 1601, "at most 1600 characters"),
        ("message", "   ", "blank"),
        ("message", "bell\x07", "control characters"),
        ("severity", "urgent", "must be one of: critical, warning, info"),
        ("severity", None, "is required"),
        ("user_id", 42, "must be a string"),
        ("alert_type", "", "at least 1 characters"),
    ],
)
def test_notify_validation_names_the_field_and_the_problem(
    client: Client, svc: Services, field: str, value: Any, expected: str
) -> None:
    status, answer = call(client, "POST", "/v1/alerts/a-1/notify", {**NOTIFY, field: value})

    assert status == 400, answer
    assert list(details(answer)) == [field]
    assert expected in details(answer)[field]
    assert nothing_created(svc)


def test_notify_accepts_a_message_of_exactly_1600_characters(client: Client) -> None:
    status, job = call(client, "POST", "/v1/alerts/a-1/notify", {**NOTIFY, "message": "x" * 1600})
    assert status == 202, job


def test_notify_refuses_unknown_fields_and_a_missing_token(client: Client, svc: Services) -> None:
    status, answer = call(client, "POST", "/v1/alerts/a-1/notify", {**NOTIFY, "priority": "critical"})
    assert status == 400
    assert details(answer) == {"priority": "is not a known field"}

    status, answer = call(client, "POST", "/v1/alerts/a-1/notify", NOTIFY, token="nope")
    assert status == 401
    assert answer["error"]["code"] == "unauthorized"
    assert nothing_created(svc)


# --- escalations --------------------------------------------------------------------------------


def test_the_same_escalation_twice_is_201_then_200_with_one_job_and_one_message(client: Client, svc: Services) -> None:
    first_status, first = call(client, "POST", "/v1/incidents/inc-9/escalations", ESCALATION)
    again_status, again = call(client, "POST", "/v1/incidents/inc-9/escalations", {**ESCALATION, "delay_seconds": 5})

    assert (first_status, again_status) == (201, 200)
    assert first["job_id"] == again["job_id"] == "incident:inc-9:level:1:repeat:0"
    assert again == first
    assert first["type"] == "escalation"
    assert first["priority"] == "critical"
    assert first["max_attempts"] == 3
    jobs, _ = svc.store.list(ORG)
    assert [job.job_id for job in jobs] == [first["job_id"]]
    assert queue_depth(svc, "critical") == 1  # the repeat enqueued nothing


def test_an_escalation_carries_a_default_message_naming_the_incident_and_level(client: Client, svc: Services) -> None:
    _, job = call(client, "POST", "/v1/incidents/inc-9/escalations", {**ESCALATION, "level": 2})

    stored = svc.store.get(ORG, job["job_id"])
    assert stored is not None
    assert "inc-9" in stored.payload["message"]
    assert "level 2" in stored.payload["message"].lower()
    assert stored.backoff_seconds == 5
    assert stored.payload["contact"] == {"phone_number": "+15557654321"}


def test_a_long_escalation_is_scheduled_with_its_run_at(client: Client) -> None:
    status, job = call(client, "POST", "/v1/incidents/inc-long/escalations", {**ESCALATION, "delay_seconds": 1200})

    assert status == 201
    assert job["status"] == "scheduled"
    assert parse_iso(job["run_at"]) - parse_iso(job["created_at"]) == timedelta(seconds=1200)


def test_an_escalation_without_delay_is_queued(client: Client) -> None:
    status, job = call(client, "POST", "/v1/incidents/inc-now/escalations", {**ESCALATION, "delay_seconds": 0})
    assert (status, job["status"]) == (201, "queued")


@pytest.mark.parametrize(
    ("change", "field", "expected"),
    [
        ({"level": 0}, "level", "at least 1"),
        ({"level": "1"}, "level", "must be an integer"),
        ({"repeat": -1}, "repeat", "at least 0"),
        ({"delay_seconds": 604_801}, "delay_seconds", "at most 604800"),
        ({"delay_seconds": -1}, "delay_seconds", "at least 0"),
        ({"delay_seconds": None}, "delay_seconds", "is required"),
        ({"message": ""}, "message", "at least 1"),
        ({"message": "y" * 1601}, "message", "at most 1600"),
        ({"contact": {}}, "contact", "phone_number, an email, or both"),
        ({"contact": None}, "contact", "is required"),
        ({"contact": "+15557654321"}, "contact", "must be an object"),
        ({"contact": {"phone_number": "555"}}, "contact.phone_number", "E.164"),
        ({"contact": {"email": "not-an-address"}}, "contact.email", "email address"),
        ({"contact": {"pager": "x"}}, "contact.pager", "is not a known field"),
    ],
)
def test_escalation_validation_names_the_field_and_the_problem(
    client: Client, svc: Services, change: dict[str, Any], field: str, expected: str
) -> None:
    status, answer = call(client, "POST", "/v1/incidents/inc-1/escalations", {**ESCALATION, **change})

    assert status == 400, answer
    assert field in details(answer), answer
    assert expected in details(answer)[field]
    assert nothing_created(svc)


def test_an_incident_id_that_cannot_be_part_of_a_job_id_is_refused(client: Client) -> None:
    status, answer = call(client, "POST", "/v1/incidents/inc%20one/escalations", ESCALATION)
    assert status == 400, answer
    assert "incident_id" in details(answer)


def test_a_maximal_escalation_delay_is_accepted(client: Client) -> None:
    status, job = call(client, "POST", "/v1/incidents/inc-week/escalations", {**ESCALATION, "delay_seconds": 604_800})
    assert status == 201
    assert parse_iso(job["run_at"]) - parse_iso(job["created_at"]) == timedelta(days=7)


# --- acknowledgement ------------------------------------------------------------------------------


def test_acknowledging_cancels_every_pending_escalation_of_the_incident_only(client: Client, svc: Services) -> None:
    ids = [
        call(client, "POST", "/v1/incidents/inc-5/escalations", {**ESCALATION, "level": n})[1]["job_id"]
        for n in (1, 2, 3)
    ]
    other = call(client, "POST", "/v1/incidents/inc-6/escalations", ESCALATION)[1]["job_id"]
    # Level 3 already fired: it cannot be cancelled and is not reported.
    started = svc.store.begin_attempt(ORG, ids[2], lease_s=60)
    assert started is not None
    svc.store.complete(started, {"channels": {}})

    status, answer = call(client, "DELETE", "/v1/incidents/inc-5/escalations")

    assert status == 200
    assert sorted(answer["cancelled"]) == sorted(ids[:2])
    assert [svc.store.get(ORG, i).status for i in ids] == ["cancelled", "cancelled", "completed"]  # type: ignore[union-attr]
    assert svc.store.get(ORG, other).status == "scheduled"  # type: ignore[union-attr]

    # A second acknowledgement finds nothing pending; re-posting a cancelled one keeps it cancelled.
    assert call(client, "DELETE", "/v1/incidents/inc-5/escalations") == (200, {"cancelled": []})
    status, job = call(client, "POST", "/v1/incidents/inc-5/escalations", ESCALATION)
    assert (status, job["status"]) == (200, "cancelled")


def test_acknowledging_an_unknown_incident_cancels_nothing(client: Client) -> None:
    assert call(client, "DELETE", "/v1/incidents/never-seen/escalations") == (200, {"cancelled": []})


def test_another_organization_cannot_acknowledge_or_see_our_escalations(client: Client, svc: Services) -> None:
    _, job = call(client, "POST", "/v1/incidents/inc-7/escalations", ESCALATION)

    assert call(client, "DELETE", "/v1/incidents/inc-7/escalations", token=OTHER_MEMBER) == (200, {"cancelled": []})
    assert call(client, "GET", f"/v1/jobs/{job['job_id']}", token=OTHER_MEMBER)[0] == 404
    # The same incident id in the other org is a different escalation: 201, not 200.
    assert call(client, "POST", "/v1/incidents/inc-7/escalations", ESCALATION, token=OTHER_MEMBER)[0] == 201
    assert svc.store.get(ORG, job["job_id"]).status == "scheduled"  # type: ignore[union-attr]


def test_the_operator_acts_on_the_organization_it_names(client: Client, svc: Services) -> None:
    status, answer = call(client, "POST", "/v1/alerts/a-1/notify", NOTIFY, token=OPERATOR)
    assert (status, answer["error"]["code"]) == (400, "org_required")

    status, job = call(client, "POST", "/v1/alerts/a-1/notify", {**NOTIFY, "org_id": ORG}, token=OPERATOR)
    assert (status, job["org_id"]) == (202, ORG)
    status, job = call(
        client, "POST", "/v1/incidents/inc-op/escalations", {**ESCALATION, "org_id": ORG}, token=OPERATOR
    )
    assert status == 201
    assert call(client, "DELETE", f"/v1/incidents/inc-op/escalations?org_id={ORG}", token=OPERATOR) == (
        200,
        {"cancelled": [job["job_id"]]},
    )
