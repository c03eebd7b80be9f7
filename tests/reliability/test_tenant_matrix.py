"""Tenant isolation, route by route: organization A's member and admin tokens on B's resources.

B (a throwaway organization) owns a scheduled job, a dead job (in the ledger and the DLQ), a
redrive, a recipient, a pending escalation, an alert job and a webhook secret. For every `/v1`
route of the app, A's member and A's admin call it naming B's resource (in the path, in the
query as `org_id`, or in the body): the answer is the 404 an unknown id gets, a 403 when the role
is not enough, or A's own empty/new resource where the route creates in the caller's namespace
(ids are scoped to their organization); never anything of B's in the body, and B's resources are
unchanged afterwards. A route of the app without a row here fails the coverage test.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest

from tests.contract.webhook_receiver import Reply as WebhookReply
from tests.reliability.harness import CountingReceiver, Jobs, Tenant
from tests.reliability.report import ReliabilityReport
from tests.support.api import Api, Reply, wait_for

pytestmark = pytest.mark.reliability

QUEUE = "critical"
PUBLIC = {("GET", "/health"), ("GET", "/ping"), ("GET", "/openapi.json"), ("GET", "/admin")}


@dataclass
class World:
    a: Tenant
    b: Tenant
    job_id: str  # B's scheduled job
    dead_job_id: str  # B's dead job
    redrive_id: str
    user_id: str
    incident_id: str
    escalation_id: str
    alert_id: str
    secret: str
    secrets: set[str]  # strings only B's data holds: none may appear in an answer to A

    def b_state(self, b: Api) -> dict[str, Any]:
        """What B sees of its own resources (must not change while A pokes at them)."""
        job = b.get(f"/v1/jobs/{self.job_id}").body
        escalation = b.get(f"/v1/jobs/{quote(self.escalation_id, safe='')}").body
        dead = b.get(f"/v1/jobs/{self.dead_job_id}").body
        return {
            "job": (job["status"], job["attempts"]),
            "escalation": escalation["status"],
            "dead": dead["status"],
            "recipient": b.get(f"/v1/recipients/{self.user_id}").body,
            "secret": self.b_admin_secret(),
            "dead_letters": sorted(i["job_id"] for i in b.get(f"/v1/admin/queues/{QUEUE}/dead-letters").body["items"]),
        }

    def b_admin_secret(self) -> str:
        return str(self.b.admin.get("/v1/webhook-secret").body["secret"])


@pytest.fixture(scope="module")
def world(tenants: Callable[[str], Tenant], jobs: Jobs) -> Iterator[World]:
    a, b = tenants("rel-iso-a"), tenants("rel-iso-b")
    # `named`: in ids A may name too (its own namespace echoes them); `private`: B's content only.
    named, private = uuid.uuid4().hex[:10], uuid.uuid4().hex[:12]
    receiver = CountingReceiver(policy=lambda _: WebhookReply(400))  # B's webhooks die at once
    receiver.start()
    try:
        scheduled = b.member.post(
            "/v1/jobs",
            {"type": "webhook", "delay_seconds": 3600, "payload": {"url": receiver.url, "body": {"secret": private}}},
        )
        assert scheduled.status == 202, scheduled
        dying = b.member.post(
            "/v1/jobs", {"type": "webhook", "priority": QUEUE, "payload": {"url": receiver.url, "body": {"b": private}}}
        )
        assert dying.status == 202, dying
        dead_job_id = dying.body["job_id"]
        b.member.wait_for_job(dead_job_id, {"dead"}, timeout=120)
        wait_for(
            lambda: b.admin.get(f"/v1/admin/queues/{QUEUE}/dead-letters?job_id={dead_job_id}").body["items"],
            30,
            "B's dead letter in the ledger",
        )
        # B redrives an error code nothing has: a finished redrive of B's, with an id A must not read.
        redrive = post_redrive(b.admin, {"error_code": f"none-{named}"})
        user_id, incident_id = f"user-{named}", f"inc-{named}"
        email = f"b-{private}@example.com"
        put = b.member.put(
            f"/v1/recipients/{user_id}", {"email": email, "timezone": "America/Chicago", "digests": ["daily"]}
        )
        assert put.status == 201, put
        escalation = b.member.post(
            f"/v1/incidents/{incident_id}/escalations",
            {"level": 1, "repeat": 0, "delay_seconds": 3600, "contact": {"email": email}},
        )
        assert escalation.status == 201, escalation
        alert_id = f"alert-{named}"
        alert = b.member.post(
            f"/v1/alerts/{alert_id}/notify",
            {
                "user_id": user_id,
                "phone_number": "+15550001234",
                "message": f"B only {private}",
                "alert_type": "t",
                "severity": "critical",
            },
        )
        assert alert.status == 202, alert
        secret = str(b.admin.get("/v1/webhook-secret").body["secret"])
        world = World(
            a=a,
            b=b,
            job_id=scheduled.body["job_id"],
            dead_job_id=dead_job_id,
            redrive_id=redrive["redrive_id"],
            user_id=user_id,
            incident_id=incident_id,
            escalation_id=escalation.body["job_id"],
            alert_id=alert_id,
            secret=secret,
            secrets={
                b.org_id,
                scheduled.body["job_id"],
                dead_job_id,
                redrive["redrive_id"],
                email,
                secret,
                private,
                alert.body["job_id"],
            },
        )
        yield world
        for job_id in (world.job_id, world.escalation_id):
            b.member.delete(f"/v1/jobs/{quote(job_id, safe='')}")
    finally:
        receiver.stop()


def post_redrive(admin: Api, body: dict[str, Any]) -> dict[str, Any]:
    def started() -> Reply | None:
        reply = admin.post(f"/v1/admin/queues/{QUEUE}/redrive", body)
        return reply if reply.status in (200, 202) else None  # 409: another redrive holds the queue

    reply = wait_for(started, 120, "the queue's redrive lock", interval=2)
    return dict(reply.body)


# --- the matrix ------------------------------------------------------------------------------
# (method, route, concrete path, body) -> the statuses allowed for a member and an admin.
# 404: B's id is as unknown to A as a made-up one. 403: the role is not enough. 200/201/202: the
# route works in A's own namespace (B's id names nothing of B's there).


def cases(w: World) -> list[tuple[str, str, str, Any, set[int], set[int]]]:
    b_org = w.b.org_id
    esc = quote(w.escalation_id, safe="")
    q = f"/v1/admin/queues/{QUEUE}"
    return [
        ("GET", "/v1/jobs/{job_id}", f"/v1/jobs/{w.job_id}", None, {404}, {404}),
        ("GET", "/v1/jobs/{job_id}", f"/v1/jobs/{w.job_id}?org_id={b_org}", None, {404}, {404}),
        ("GET", "/v1/jobs/{job_id}", f"/v1/jobs/{esc}", None, {404}, {404}),
        ("DELETE", "/v1/jobs/{job_id}", f"/v1/jobs/{w.job_id}", None, {404}, {404}),
        ("DELETE", "/v1/jobs/{job_id}", f"/v1/jobs/{w.job_id}?org_id={b_org}", None, {404}, {404}),
        ("GET", "/v1/jobs", f"/v1/jobs?org_id={b_org}&limit=100", None, {200}, {200}),
        (
            "POST",
            "/v1/jobs",
            "/v1/jobs",
            {"org_id": b_org, "type": "webhook", "payload": {"url": "http://127.0.0.1:9/x", "body": 1}},
            {400},
            {400},
        ),
        ("GET", "/v1/webhook-secret", f"/v1/webhook-secret?org_id={b_org}", None, {403}, {200}),
        ("POST", "/v1/webhook-secret/rotate", f"/v1/webhook-secret/rotate?org_id={b_org}", {}, {403}, {200}),
        (
            "DELETE",
            "/v1/incidents/{incident_id}/escalations",
            f"/v1/incidents/{w.incident_id}/escalations",
            None,
            {200},
            {200},
        ),
        (
            "POST",
            "/v1/incidents/{incident_id}/escalations",
            f"/v1/incidents/{w.incident_id}/escalations",
            {"level": 1, "repeat": 0, "delay_seconds": 3600, "contact": {"email": "a@example.com"}},
            {201},
            {200},
        ),
        (
            "POST",
            "/v1/alerts/{alert_id}/notify",
            f"/v1/alerts/{w.alert_id}/notify",
            {
                "user_id": w.user_id,
                "phone_number": "+15550009999",
                "message": "A's own",
                "alert_type": "t",
                "severity": "info",
            },
            {202},
            {202},
        ),
        ("GET", "/v1/recipients", f"/v1/recipients?org_id={b_org}&limit=100", None, {200}, {200}),
        ("GET", "/v1/recipients/{user_id}", f"/v1/recipients/{w.user_id}", None, {404}, {404}),
        ("DELETE", "/v1/recipients/{user_id}", f"/v1/recipients/{w.user_id}", None, {404}, {404}),
        (
            "PUT",
            "/v1/recipients/{user_id}",
            f"/v1/recipients/{w.user_id}",
            {"email": "a@example.com", "timezone": "UTC", "digests": []},
            {201},
            {200},
        ),
        ("POST", "/v1/digests/run", "/v1/digests/run", {"kind": "weekly", "org_id": b_org}, {403}, {400}),
        ("POST", "/v1/digests/run", f"/v1/digests/run?org_id={b_org}", {"kind": "weekly"}, {403}, {202}),
        ("GET", "/v1/admin/queues", f"/v1/admin/queues?org_id={b_org}", None, {403}, {200}),
        ("GET", "/v1/admin/queues/{name}/dead-letters", f"{q}/dead-letters?org_id={b_org}", None, {403}, {200}),
        ("GET", "/v1/admin/queues/{name}/dead-letters", f"{q}/dead-letters?job_id={w.dead_job_id}", None, {403}, {200}),
        ("POST", "/v1/admin/queues/{name}/redrive", f"{q}/redrive", {"org_id": b_org, "dry_run": True}, {403}, {200}),
        (
            "POST",
            "/v1/admin/queues/{name}/redrive",
            f"{q}/redrive",
            {"job_id": w.dead_job_id, "dry_run": True},
            {403},
            {200},
        ),
        ("POST", "/v1/admin/queues/{name}/redrive", f"{q}/redrive", {"job_id": w.dead_job_id}, {403}, {202, 409}),
        ("GET", "/v1/admin/queues/{name}/redrive/{redrive_id}", f"{q}/redrive/{w.redrive_id}", None, {403}, {404}),
    ]


def app_routes() -> set[tuple[str, str]]:
    from app import app

    return {(method, path) for path, entries in app.routes.items() for method in entries}


def test_every_route_of_the_app_has_a_row_in_the_matrix(world: World) -> None:
    covered = {(method, route) for method, route, *_ in cases(world)}
    missing = app_routes() - PUBLIC - covered
    assert not missing, f"routes without an isolation row: {sorted(missing)}"


def test_org_a_tokens_on_org_b_resources_get_404_or_403_and_no_data_of_b(
    world: World, reliability_report: ReliabilityReport
) -> None:
    before = world.b_state(world.b.admin)
    problems: list[str] = []
    calls = 0
    seen: dict[tuple[str, str, str, str], Reply] = {}
    for method, _route, path, body, member_ok, admin_ok in cases(world):
        for role, api, allowed in (("member", world.a.member, member_ok), ("admin", world.a.admin, admin_ok)):
            reply = api.request(method, path, body)
            seen[(role, method, path, json.dumps(body))] = reply
            calls += 1
            text = json.dumps(reply.body)
            asked = path + json.dumps(body)  # what A itself sent may come back (an echoed filter)
            leaked = sorted(s for s in world.secrets if s in text and s not in asked)
            if reply.status not in allowed:
                problems.append(f"{role} {method} {path} -> {reply.status} (allowed {sorted(allowed)}): {text[:300]}")
            if leaked:
                problems.append(f"{role} {method} {path} -> body holds B's data {leaked}: {text[:300]}")
            if 200 <= reply.status < 300 and isinstance(reply.body, dict):
                problems += owned_by_a(reply.body, world, f"{role} {method} {path}")
    after = world.b_state(world.b.admin)
    q, b_org = f"/v1/admin/queues/{QUEUE}", world.b.org_id
    # What A's admin got back is A's own (empty) share, not B's:
    for path in (f"{q}/dead-letters?org_id={b_org}", f"{q}/dead-letters?job_id={world.dead_job_id}"):
        assert seen[("admin", "GET", path, "null")].body["items"] == []
    for body in ({"org_id": b_org, "dry_run": True}, {"job_id": world.dead_job_id, "dry_run": True}):
        assert seen[("admin", "POST", f"{q}/redrive", json.dumps(body))].body["to_move"] == 0
    real = seen[("admin", "POST", f"{q}/redrive", json.dumps({"job_id": world.dead_job_id}))]
    assert real.status == 409 or real.body["to_move"] == 0
    queues = seen[("admin", "GET", f"/v1/admin/queues?org_id={b_org}", "null")].body["items"]
    assert next(row for row in queues if row["priority"] == QUEUE)["dlq_depth"] == 0  # B's dead letter not counted
    assert seen[("admin", "GET", f"/v1/webhook-secret?org_id={b_org}", "null")].body["secret"] != world.secret
    listed = seen[("member", "GET", f"/v1/jobs?org_id={b_org}&limit=100", "null")].body["items"]
    assert all(job["org_id"] == world.a.org_id for job in listed)
    reliability_report.note(
        "tenant isolation",
        f"{calls} calls by A's member and admin on B's resources over "
        f"{len({(m, r) for m, r, *_ in cases(world)})} routes; {len(problems)} problems",
    )
    assert not problems, "\n".join(problems)
    assert after == before, "A changed B's resources"


def owned_by_a(body: dict[str, Any], world: World, where: str) -> list[str]:
    """Items and records in a 200 answer belong to A (or to no organization)."""
    records = body.get("items") if isinstance(body.get("items"), list) else [body]
    wrong = [r for r in records if isinstance(r, dict) and r.get("org_id") not in (None, world.a.org_id)]
    return [f"{where}: records of another organization: {wrong[:3]}"] if wrong else []
