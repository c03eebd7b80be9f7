"""The Jobs section of the contract, in-process: Chalice's test client over moto."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chalicelib.services import Services

WEBHOOK = {"type": "webhook", "payload": {"url": "http://127.0.0.1:9/hook", "body": {"hello": "world"}}}


def call(
    client: Any, method: str, path: str, token: str | None = "member-a", body: Any = None, raw: str | None = None
) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    payload = raw if raw is not None else (json.dumps(body) if body is not None else None)
    response = getattr(client.http, method.lower())(path, headers=headers, body=payload)
    return response.status_code, json.loads(response.body) if response.body else None


def queued_messages(svc: Services, priority: str = "normal") -> list[dict[str, Any]]:
    url = svc.queue.url_of(svc.settings.queue_name(priority))
    messages = svc.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(m["Body"]) for m in messages]


def test_given_a_webhook_job_when_posted_then_202_with_a_queued_record_and_one_message(client, svc):
    status, job = call(client, "POST", "/v1/jobs", body=WEBHOOK)
    assert status == 202
    assert job["status"] == "queued" and job["type"] == "webhook" and job["org_id"] == "org-a"
    assert job["attempts"] == 0 and job["max_attempts"] == 5 and job["priority"] == "normal"
    assert job["created_at"].endswith("Z") and "." in job["created_at"]
    envelopes = queued_messages(svc)
    assert [e["job_id"] for e in envelopes] == [job["job_id"]]
    assert "payload" not in envelopes[0] and envelopes[0]["v"] == 1


def test_given_a_delay_when_posted_then_the_job_is_scheduled_at_run_at(client):
    status, job = call(client, "POST", "/v1/jobs", body={**WEBHOOK, "delay_seconds": 1200})
    assert status == 202 and job["status"] == "scheduled" and job["run_at"] > job["created_at"]


def test_given_the_same_idempotency_key_twice_then_one_job_and_one_message(client, svc):
    body = {**WEBHOOK, "idempotency_key": "order-42"}
    first = call(client, "POST", "/v1/jobs", body=body)
    second = call(client, "POST", "/v1/jobs", body=body)
    assert (first[0], second[0]) == (202, 200)
    assert first[1]["job_id"] == second[1]["job_id"]
    assert len(queued_messages(svc)) == 1


def test_idempotency_keys_are_scoped_per_organization(client):
    body = {**WEBHOOK, "idempotency_key": "same-key"}
    a = call(client, "POST", "/v1/jobs", body=body)
    b = call(client, "POST", "/v1/jobs", token="member-b", body=body)
    assert a[0] == b[0] == 202 and a[1]["job_id"] != b[1]["job_id"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "fax", "payload": {}}, "type"),
        ({"type": "webhook"}, "payload"),
        ({**WEBHOOK, "delay_seconds": 604801}, "delay_seconds"),
        ({**WEBHOOK, "delay_seconds": True}, "delay_seconds"),
        ({**WEBHOOK, "max_attempts": 11}, "max_attempts"),
        ({**WEBHOOK, "backoff_seconds": 0}, "backoff_seconds"),
        ({**WEBHOOK, "priority": "urgent"}, "priority"),
        ({**WEBHOOK, "surprise": 1}, "surprise"),
        ({"type": "webhook", "payload": {"url": "ftp://x", "body": 1}}, "payload.url"),
        ({"type": "sms", "payload": {"phone_number": "555", "message": "hi"}}, "payload.phone_number"),
        ({"type": "email", "payload": {"to": "nobody", "subject": "s", "text": "t"}}, "payload.to"),
    ],
)
def test_given_bad_input_then_400_with_field_details_and_nothing_written(client, svc, body, field):
    status, error = call(client, "POST", "/v1/jobs", body=body)
    assert status == 400, error
    assert error["error"]["code"] == "validation_error"
    assert field in [d["field"] for d in error["error"]["details"]]
    assert queued_messages(svc) == []
    assert call(client, "GET", "/v1/jobs")[1]["items"] == []


def test_malformed_json_is_400_and_a_huge_body_is_413(client):
    assert call(client, "POST", "/v1/jobs", raw="{not json")[1]["error"]["code"] == "malformed_json"
    status, error = call(client, "POST", "/v1/jobs", raw=json.dumps({**WEBHOOK, "pad": "x" * 300_000}))
    assert status == 413 and error["error"]["code"] == "payload_too_large"


def test_auth_missing_or_unknown_token_is_401_and_member_on_admin_route_is_403(client):
    assert call(client, "GET", "/v1/jobs", token=None)[0] == 401
    assert call(client, "GET", "/v1/jobs", token="nope")[0] == 401
    status, error = call(client, "GET", "/v1/webhook-secret", token="member-a")
    assert status == 403 and error["error"]["code"] == "forbidden"


def test_another_orgs_job_is_404_for_get_and_delete_and_absent_from_lists(client):
    _, job = call(client, "POST", "/v1/jobs", body=WEBHOOK)
    for method in ("GET", "DELETE"):
        status, error = call(client, method, f"/v1/jobs/{job['job_id']}", token="member-b")
        assert status == 404 and error == {"error": {"code": "not_found", "message": "No such job."}}
    assert call(client, "GET", "/v1/jobs", token="member-b")[1]["items"] == []


def test_cancel_queued_job_then_second_cancel_is_409(client):
    _, job = call(client, "POST", "/v1/jobs", body={**WEBHOOK, "delay_seconds": 1200})
    status, cancelled = call(client, "DELETE", f"/v1/jobs/{job['job_id']}")
    assert status == 200 and cancelled["status"] == "cancelled" and cancelled["finished_at"]
    assert call(client, "DELETE", f"/v1/jobs/{job['job_id']}")[0] == 409


def test_list_is_newest_first_paginated_and_filtered(client):
    ids = [call(client, "POST", "/v1/jobs", body=WEBHOOK)[1]["job_id"] for _ in range(5)]
    call(client, "DELETE", f"/v1/jobs/{ids[0]}")
    seen: list[str] = []
    cursor = None
    while True:
        path = "/v1/jobs?limit=2" + (f"&cursor={cursor}" if cursor else "")
        status, page = call(client, "GET", path)
        assert status == 200 and len(page["items"]) <= 2
        seen += [j["job_id"] for j in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == list(reversed(ids))
    _, cancelled = call(client, "GET", "/v1/jobs?status=cancelled")
    assert [j["job_id"] for j in cancelled["items"]] == [ids[0]]
    assert call(client, "GET", "/v1/jobs?status=bogus")[0] == 400
    assert call(client, "GET", "/v1/jobs?limit=101")[0] == 400
    assert call(client, "GET", "/v1/jobs?cursor=garbage")[0] == 400


def test_a_cursor_from_another_org_is_rejected(client):
    for _ in range(3):
        call(client, "POST", "/v1/jobs", body=WEBHOOK)
    cursor = call(client, "GET", "/v1/jobs?limit=1")[1]["next_cursor"]
    assert cursor
    assert call(client, "GET", f"/v1/jobs?cursor={cursor}", token="member-b")[0] == 400


def test_webhook_secret_has_the_standard_webhooks_form_and_rotates(client):
    status, first = call(client, "GET", "/v1/webhook-secret", token="admin-a")
    assert status == 200 and first["secret"].startswith("whsec_")
    assert call(client, "GET", "/v1/webhook-secret", token="admin-a")[1] == first
    rotated = call(client, "POST", "/v1/webhook-secret/rotate", token="admin-a", body={})[1]
    assert rotated["secret"] != first["secret"]
    assert call(client, "GET", "/v1/webhook-secret", token="admin-b")[1]["secret"] != rotated["secret"]


def test_operator_must_name_the_org_and_then_sees_it(client):
    _, job = call(client, "POST", "/v1/jobs", body=WEBHOOK)
    assert call(client, "GET", "/v1/jobs", token="operator")[0] == 400
    status, page = call(client, "GET", "/v1/jobs?org_id=org-a", token="operator")
    assert status == 200 and [j["job_id"] for j in page["items"]] == [job["job_id"]]


def test_health_is_ok_over_moto(client):
    status, body = call(client, "GET", "/health", token=None)
    assert status == 200 and body["status"] == "ok" and body["checks"]["table"] == "ok"
