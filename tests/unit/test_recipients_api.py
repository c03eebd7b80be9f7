"""The Recipients routes over moto, through Chalice's test client and the real app.

GIVEN/WHEN/THEN in the names; every rejected request is checked to have changed nothing.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from chalicelib.alerts.quiet_hours import RecipientQuietHours
from chalicelib.ddb import from_item, to_item
from chalicelib.services import Services

ANA = {
    "email": "ana@example.com",
    "phone_number": "+15551234567",
    "timezone": "America/Chicago",
    "digests": ["weekly", "daily"],
    "quiet_hours": {"start": "22:00", "end": "07:00"},
}


def call(client: Any, method: str, path: str, body: Any = None, token: str | None = "member-a") -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    payload = json.dumps(body) if body is not None else b""
    response = client.http.request(method, path, headers=headers, body=payload)
    return response.status_code, json.loads(response.body) if response.body else None


def raw_item(svc: Services, org: str, user_id: str) -> dict[str, Any] | None:
    item = svc.ddb.get_item(
        TableName=svc.settings.table_name, Key=to_item({"pk": f"ORG#{org}", "sk": f"RECIPIENT#{user_id}"})
    ).get("Item")
    return from_item(item) if item else None


def problems(body: dict[str, Any]) -> dict[str, str]:
    return {d["field"]: d["problem"] for d in body["error"]["details"]}


# --- create, replace, read, delete ---------------------------------------------------------------


def test_given_a_new_user_when_put_then_201_with_the_recipient_and_the_item_has_the_shared_layout(client, svc):
    status, body = call(client, "PUT", "/v1/recipients/ana", ANA)

    assert status == 201
    assert body["user_id"] == "ana" and body["org_id"] == "org-a"
    # kinds come back in a canonical order, whatever order they were given in
    assert body["digests"] == ["daily", "weekly"]
    assert body["quiet_hours"] == {"start": "22:00", "end": "07:00"}
    assert body["created_at"] == body["updated_at"]
    # THEN the item is where, and named as, the SMS quiet-hours code reads it
    item = raw_item(svc, "org-a", "ana")
    assert item is not None
    assert {k: item[k] for k in ("email", "phone_number", "timezone", "digests", "quiet_hours")} == {
        "email": "ana@example.com",
        "phone_number": "+15551234567",
        "timezone": "America/Chicago",
        "digests": ["daily", "weekly"],
        "quiet_hours": {"start": "22:00", "end": "07:00"},
    }
    window = RecipientQuietHours(svc.ddb, svc.settings.table_name).get("org-a", "ana")
    assert window is not None and window.describe() == {"start": "22:00", "end": "07:00", "timezone": "America/Chicago"}


def test_given_an_existing_user_when_put_again_then_200_replaced_whole_and_created_at_kept(client, svc):
    _, first = call(client, "PUT", "/v1/recipients/bo", ANA)

    status, body = call(
        client, "PUT", "/v1/recipients/bo", {"email": "bo@example.org", "timezone": "UTC", "digests": []}
    )

    assert status == 200
    assert body["created_at"] == first["created_at"]
    assert body["email"] == "bo@example.org" and body["digests"] == []
    # fields left out of a replacement are gone, not kept from before
    assert body["phone_number"] is None and body["quiet_hours"] is None
    item = raw_item(svc, "org-a", "bo")
    assert item is not None and "phone_number" not in item and "quiet_hours" not in item
    assert RecipientQuietHours(svc.ddb, svc.settings.table_name).get("org-a", "bo") is None
    assert call(client, "GET", "/v1/recipients/bo")[1] == body


def test_get_delete_and_another_orgs_recipient_is_404(client):
    call(client, "PUT", "/v1/recipients/cy", ANA)

    assert call(client, "GET", "/v1/recipients/cy", token="member-b")[0] == 404
    assert call(client, "DELETE", "/v1/recipients/cy", token="member-b")[0] == 404
    status, removed = call(client, "DELETE", "/v1/recipients/cy")
    assert status == 200 and removed["user_id"] == "cy"
    assert call(client, "GET", "/v1/recipients/cy")[0] == 404
    status, body = call(client, "DELETE", "/v1/recipients/cy")
    assert status == 404 and body["error"]["code"] == "not_found"


def test_two_orgs_may_use_the_same_user_id_without_seeing_each_other(client):
    call(client, "PUT", "/v1/recipients/dee", ANA)
    call(client, "PUT", "/v1/recipients/dee", {**ANA, "email": "dee@b.example.com"}, token="member-b")

    assert call(client, "GET", "/v1/recipients/dee")[1]["email"] == "ana@example.com"
    assert call(client, "GET", "/v1/recipients/dee", token="member-b")[1]["email"] == "dee@b.example.com"


def test_user_ids_are_the_alerts_apis_user_ids_including_punctuation(client):
    status, body = call(client, "PUT", "/v1/recipients/auth0%7C5f1a.b@c", ANA)

    assert status == 201 and body["user_id"] == "auth0|5f1a.b@c"
    assert call(client, "GET", "/v1/recipients/auth0%7C5f1a.b@c")[0] == 200


# --- list ----------------------------------------------------------------------------------------


def test_the_list_pages_in_user_id_order_with_an_opaque_cursor(client):
    for user in ("u3", "u1", "u5", "u2", "u4"):
        call(client, "PUT", f"/v1/recipients/{user}", ANA)
    call(client, "PUT", "/v1/recipients/other", ANA, token="member-b")

    seen, cursor, pages = [], None, 0
    while True:
        status, body = call(client, "GET", "/v1/recipients?limit=2" + (f"&cursor={cursor}" if cursor else ""))
        assert status == 200 and len(body["items"]) <= 2
        seen += [item["user_id"] for item in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == ["u1", "u2", "u3", "u4", "u5"] and pages >= 3


def test_a_forged_or_another_orgs_cursor_is_400(client):
    for user in ("x1", "x2"):
        call(client, "PUT", f"/v1/recipients/{user}", ANA, token="member-b")
    cursor_b = call(client, "GET", "/v1/recipients?limit=1", token="member-b")[1]["next_cursor"]

    for cursor in ("not-a-cursor", cursor_b):
        status, body = call(client, "GET", f"/v1/recipients?cursor={cursor}")
        assert status == 400 and problems(body) == {"cursor": "is not a cursor this API gave out"}
    assert call(client, "GET", "/v1/recipients?limit=101")[0] == 400


# --- validation: every problem at once, and nothing written ---------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"email": "not-an-email"}, "email"),
        ({"email": None}, "email"),
        ({"phone_number": "555-1234"}, "phone_number"),
        ({"phone_number": "+0551234567"}, "phone_number"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"timezone": "../../etc/passwd"}, "timezone"),
        ({"timezone": "/usr/share/zoneinfo/UTC"}, "timezone"),
        ({"timezone": "localtime"}, "timezone"),
        ({"timezone": 5}, "timezone"),
        ({"digests": "daily"}, "digests"),
        ({"digests": ["hourly"]}, "digests[0]"),
        ({"digests": ["daily", "daily"]}, "digests"),
        ({"quiet_hours": {"start": "7:00", "end": "08:00"}}, "quiet_hours.start"),
        ({"quiet_hours": {"start": "22:00", "end": "24:00"}}, "quiet_hours.end"),
        ({"quiet_hours": {"start": "22:00"}}, "quiet_hours.end"),
        ({"quiet_hours": {"start": "22:00", "end": "07:00", "days": 5}}, "quiet_hours.days"),
        ({"quiet_hours": "22:00-07:00"}, "quiet_hours"),
        ({"quiet_hours": {"start": "２２:00", "end": "07:00"}}, "quiet_hours.start"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_given_an_invalid_field_then_400_naming_it_and_nothing_is_written(client, svc, change, field):
    body = {**ANA, **change}
    status, reply = call(client, "PUT", "/v1/recipients/val", body)

    assert status == 400 and reply["error"]["code"] == "validation_error"
    assert field in problems(reply)
    assert raw_item(svc, "org-a", "val") is None


def test_every_problem_is_reported_at_once(client):
    status, reply = call(client, "PUT", "/v1/recipients/val", {"phone_number": "x", "digests": ["yearly"]})

    assert status == 400
    assert set(problems(reply)) == {"email", "timezone", "phone_number", "digests[0]"}


def test_a_replacement_that_is_invalid_leaves_the_recipient_as_it_was(client):
    call(client, "PUT", "/v1/recipients/keep", ANA)

    assert call(client, "PUT", "/v1/recipients/keep", {**ANA, "timezone": "Nowhere/Land"})[0] == 400
    assert call(client, "GET", "/v1/recipients/keep")[1]["timezone"] == "America/Chicago"


@pytest.mark.parametrize("tz", ["America/New_York", "Asia/Kolkata", "Pacific/Honolulu", "UTC", "Asia/Kathmandu"])
def test_iana_zones_are_accepted(client, tz):
    assert call(client, "PUT", "/v1/recipients/tz", {**ANA, "timezone": tz})[0] in (200, 201)


def test_a_user_id_that_is_not_text_is_400(client):
    status, reply = call(client, "PUT", "/v1/recipients/a%01b", ANA)
    assert status == 400 and "user_id" in problems(reply)


# --- who may ---------------------------------------------------------------------------------------


def test_members_manage_recipients_and_a_missing_token_is_401(client):
    assert call(client, "PUT", "/v1/recipients/m1", ANA, token="member-a")[0] == 201
    assert call(client, "PUT", "/v1/recipients/m2", ANA, token="admin-a")[0] == 201
    assert call(client, "GET", "/v1/recipients", token=None)[0] == 401
    assert call(client, "PUT", "/v1/recipients/m3", ANA, token="hrld_unknown")[0] == 401


def test_the_operator_names_the_organization(client):
    status, body = call(client, "PUT", "/v1/recipients/op", ANA, token="operator")
    assert status == 400 and body["error"]["code"] == "org_required"

    assert call(client, "PUT", "/v1/recipients/op?org_id=org-b", ANA, token="operator")[0] == 201
    assert call(client, "GET", "/v1/recipients/op", token="member-b")[0] == 200
    assert call(client, "GET", "/v1/recipients/op?org_id=org-b", token="operator")[0] == 200
    # a member's org_id in the query is ignored: it acts on its own organization
    assert call(client, "GET", "/v1/recipients/op?org_id=org-b", token="member-a")[0] == 404
