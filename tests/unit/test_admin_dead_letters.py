"""Queue stats and dead letters (the ledger), through the app's routes over moto."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chalicelib.services import Services
from tests.unit.admin_harness import OpsHarness

NORMAL = "herald-local-normal"
NORMAL_DLQ = "herald-local-normal-dlq"


def call(client: Any, method: str, path: str, token: str = "admin-a", body: Any = None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    payload = json.dumps(body) if body is not None else None
    response = getattr(client.http, method.lower())(path, headers=headers, body=payload)
    return response.status_code, json.loads(response.body) if response.body else None


@pytest.fixture
def ops(svc: Services) -> OpsHarness:
    return OpsHarness(svc)


def test_given_dead_jobs_when_an_admin_peeks_then_only_its_own_with_the_contract_fields(client, ops):
    mine = ops.kill("org-a", 2, code="http_500")
    ops.kill("org-b", 1)
    status, page = call(client, "GET", f"/v1/admin/queues/{NORMAL}/dead-letters")
    assert status == 200 and page["next_cursor"] is None
    assert sorted(item["job_id"] for item in page["items"]) == sorted(job.job_id for job in mine)
    item = page["items"][0]
    assert set(item) == {"message_id", "job_id", "org_id", "type", "attempts", "last_error", "first_seen_at"}
    assert item["org_id"] == "org-a" and item["type"] == "webhook" and item["attempts"] == 1
    assert item["last_error"] == {"code": "http_500", "message": "the receiver said http_500"}
    assert item["message_id"] and item["first_seen_at"].endswith("Z")


def test_given_dead_letters_when_peeked_twice_then_nothing_is_consumed(client, ops):
    ops.kill("org-a", 3)
    first = call(client, "GET", f"/v1/admin/queues/{NORMAL}/dead-letters")
    second = call(client, "GET", f"/v1/admin/queues/{NORMAL}/dead-letters")
    assert first == second and len(first[1]["items"]) == 3
    depth = ops.depth(NORMAL_DLQ)
    assert (depth.visible, depth.in_flight) == (3, 0)  # never received: still visible, not in flight


def test_the_operator_sees_every_org_and_filters_by_org_type_error_code_and_job_id(client, ops):
    a500 = ops.kill("org-a", 1, code="http_500")
    a400 = ops.kill("org-a", 1, code="http_400", job_type="email")
    b500 = ops.kill("org-b", 1, code="http_500")
    path = f"/v1/admin/queues/{NORMAL}/dead-letters"

    def ids(query: str) -> set[str]:
        status, page = call(client, "GET", path + query, token="operator")
        assert status == 200, page
        return {item["job_id"] for item in page["items"]}

    assert ids("") == {j.job_id for j in a500 + a400 + b500}
    assert ids("?org_id=org-b") == {b500[0].job_id}
    assert ids("?type=email") == {a400[0].job_id}
    assert ids("?error_code=http_500") == {a500[0].job_id, b500[0].job_id}
    assert ids("?error_code=http_500&org_id=org-a") == {a500[0].job_id}
    assert ids(f"?job_id={b500[0].job_id}") == {b500[0].job_id}
    assert ids(f"?job_id={b500[0].job_id}&org_id=org-a") == set()


def test_an_admin_naming_another_org_sees_nothing_of_it(client, ops):
    ops.kill("org-b", 2)
    status, page = call(client, "GET", f"/v1/admin/queues/{NORMAL}/dead-letters?org_id=org-b")
    assert status == 200 and page == {"items": [], "next_cursor": None}


def test_pages_follow_the_cursor_and_a_foreign_cursor_is_a_400(client, ops):
    ops.kill("org-a", 5)
    ops.kill("org-b", 2)
    path = f"/v1/admin/queues/{NORMAL}/dead-letters"
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        status, page = call(client, "GET", path + "?limit=2" + (f"&cursor={cursor}" if cursor else ""))
        assert status == 200 and len(page["items"]) <= 2
        seen += [item["job_id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == len(set(seen)) == 5
    _, b_page = call(client, "GET", path + "?limit=1", token="admin-b")
    status, body = call(client, "GET", path + f"?cursor={b_page['next_cursor']}")  # org-b's cursor, org-a's admin
    assert status == 400 and body["error"]["details"][0]["field"] == "cursor"
    assert call(client, "GET", path + "?cursor=garbage")[0] == 400
    assert call(client, "GET", path + "?limit=101")[0] == 400


def test_an_unknown_queue_is_a_404_and_a_priority_names_its_queue(client, ops):
    ops.kill("org-a", 1)
    status, body = call(client, "GET", "/v1/admin/queues/nope/dead-letters")
    assert status == 404 and body["error"]["code"] == "not_found"
    assert call(client, "POST", "/v1/admin/queues/nope/redrive", body={})[0] == 404
    status, page = call(client, "GET", "/v1/admin/queues/normal/dead-letters")
    assert status == 200 and len(page["items"]) == 1


def test_members_may_not_operate(client, ops):
    assert call(client, "GET", "/v1/admin/queues", token="member-a")[0] == 403
    assert call(client, "GET", f"/v1/admin/queues/{NORMAL}/dead-letters", token="member-a")[0] == 403
    assert call(client, "POST", f"/v1/admin/queues/{NORMAL}/redrive", token="member-a", body={})[0] == 403


def test_queue_stats_for_the_operator_count_the_dlq_and_for_an_admin_its_own_dead_letters(client, ops):
    ops.kill("org-a", 2)
    ops.kill("org-b", 1)
    ops.enqueue("org-a", priority="high")  # one waiting in high
    status, page = call(client, "GET", "/v1/admin/queues", token="operator")
    assert status == 200 and page["next_cursor"] is None
    rows = {row["name"]: row for row in page["items"]}
    assert set(rows) == {f"herald-local-{p}" for p in ("critical", "high", "normal", "low")}
    normal = rows[NORMAL]
    assert {k: normal[k] for k in ("visible", "in_flight", "delayed", "dlq_name", "dlq_depth")} == {
        "visible": 0,
        "in_flight": 0,
        "delayed": 0,
        "dlq_name": NORMAL_DLQ,
        "dlq_depth": 3,
    }
    assert normal["oldest_message_age_s"] is None  # moto's CloudWatch has no datapoint, as LocalStack
    assert rows["herald-local-high"]["visible"] == 1
    _, mine = call(client, "GET", "/v1/admin/queues", token="admin-a")
    assert {row["name"]: row["dlq_depth"] for row in mine["items"]}[NORMAL] == 2


def test_a_message_sqs_moved_to_the_dlq_on_its_own_is_listed_and_stays_in_the_dlq(client, ops):
    # GIVEN a job whose message SQS moved to the DLQ itself (the worker crashed on every receive:
    # nothing wrote a ledger entry), WHEN the dead letters are listed, THEN it is there, with the
    # reason, and the DLQ still holds it, visible.
    job = ops.enqueue("org-a")
    source = ops.svc.queue.url_of(NORMAL)
    (message,) = ops.svc.sqs.receive_message(QueueUrl=source, MaxNumberOfMessages=1).get("Messages", [])
    ops.svc.sqs.send_message(QueueUrl=ops.svc.queue.url_of(NORMAL_DLQ), MessageBody=message["Body"])
    ops.svc.sqs.delete_message(QueueUrl=source, ReceiptHandle=message["ReceiptHandle"])
    status, page = call(client, "GET", f"/v1/admin/queues/{NORMAL}/dead-letters")
    assert status == 200 and [item["job_id"] for item in page["items"]] == [job.job_id]
    assert page["items"][0]["last_error"]["code"] == "receive_limit_exceeded"
    assert ops.depth(NORMAL_DLQ).visible == 1
    _, again = call(client, "GET", f"/v1/admin/queues/{NORMAL}/dead-letters")
    assert len(again["items"]) == 1
