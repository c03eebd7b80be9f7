"""GET /openapi.json stays true: a valid OpenAPI 3.1 document, generated from
chalicelib/api/openapi.py, with every route of the app and only those, and answers of the real
app (Chalice's test client over moto) that match what it documents.

Documented routes the app does not have yet are xfailed ("route not built yet"), so these
tests tighten by themselves when the routes land.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from unittest.mock import Mock

import jsonschema_rs
import pytest
from botocore.exceptions import EndpointConnectionError
from schemathesis.specs.openapi import definitions

from chalicelib.api import openapi
from chalicelib.api.http import MAX_BODY_BYTES
from chalicelib.auth import TokenStore
from chalicelib.jobs.queue import JobQueue
from chalicelib.services import Services
from tests.support.fuzz import DOCUMENT, NOT_BUILT, app_routes, documented, in_process_app, load_document
from tests.support.openapi_check import response_problems

DOC = load_document()
OPERATIONS = documented(DOC)


def _ids(operations: list[tuple[str, str]]) -> list[str]:
    return [f"{method} {path}" for method, path in operations]


# --- (1) a valid OpenAPI 3.1 document ----------------------------------------------------------
def test_the_document_is_valid_openapi_3_1_against_the_meta_schema() -> None:
    assert DOC["openapi"].startswith("3.1.")
    validator = jsonschema_rs.Draft202012Validator(definitions.OPENAPI_31)
    assert [e.message for e in validator.iter_errors(DOC)] == []


def test_the_document_passes_openapi_spec_validator() -> None:
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(DOC)  # also resolves every $ref


def test_every_component_schema_is_valid_json_schema_2020_12() -> None:
    for name, schema in DOC["components"]["schemas"].items():
        assert jsonschema_rs.meta.is_valid(schema), name


def test_every_operation_has_an_id_and_every_authenticated_one_answers_400_401_429_and_503() -> None:
    ids = [DOC["paths"][p][m.lower()]["operationId"] for m, p in OPERATIONS]
    assert len(ids) == len(set(ids))
    for method, path in OPERATIONS:
        operation = DOC["paths"][path][method.lower()]
        if operation.get("security") != []:
            assert {"400", "401", "429", "503"} <= set(operation["responses"]), f"{method} {path}"


# --- (2) the document and the app have the same routes -----------------------------------------
def test_every_route_of_the_app_is_documented_with_its_methods() -> None:
    missing = sorted(app_routes() - set(OPERATIONS))
    assert missing == [], f"routes missing from chalicelib/api/openapi.py: {missing}"


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=_ids(OPERATIONS))
def test_every_documented_route_exists_in_the_app(method: str, path: str) -> None:
    if (method, path) not in app_routes():
        pytest.xfail(NOT_BUILT)


# --- (3) the served file is what the builder makes ---------------------------------------------
def test_the_served_file_is_up_to_date_with_the_builder() -> None:
    assert DOCUMENT.read_text() == openapi.render(), (
        "chalicelib/openapi.json is stale: run `python -m chalicelib.api.openapi > chalicelib/openapi.json`"
    )


def test_the_job_request_body_lists_exactly_the_fields_the_validator_accepts() -> None:
    from chalicelib.api.jobs import JOB_FIELDS
    from chalicelib.jobs.types import PAYLOADS

    schemas = DOC["components"]["schemas"]
    assert set(schemas["JobRequest"]["properties"]) == {f.name for f in JOB_FIELDS} | {"org_id"}
    assert set(schemas["JobRequest"]["required"]) == {f.name for f in JOB_FIELDS if f.required}
    for name, fields in PAYLOADS.items():
        assert set(schemas[f"{name.capitalize()}Payload"]["properties"]) == {f.name for f in fields}


# --- (4) what the app answers is what the document says ----------------------------------------
@dataclass
class Http:
    """Chalice's test client with JSON and a bearer token; `svc` is the graph behind it."""

    client: Any
    svc: Services

    def __call__(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = "member-a",
        raw: bytes | str | None = None,
    ) -> Any:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        payload = raw if raw is not None else (json.dumps(body) if body is not None else b"")
        return self.client.http.request(method, path, headers=headers, body=payload)

    def job(self, **extra: Any) -> dict[str, Any]:
        response = self("POST", "/v1/jobs", {**WEBHOOK, **extra})
        assert response.status_code == 202, response.body
        return dict(json.loads(response.body))


WEBHOOK = {"type": "webhook", "payload": {"url": "http://127.0.0.1:9/hook", "body": {"hello": "world"}}}
Example = Callable[[Http], Any]
EXAMPLES: dict[str, tuple[str, str, int | None, Example]] = {}


def example(method: str, route: str, status: int | None) -> Callable[[Example], Example]:
    """Register a request whose answer must be `status` (None: any documented 2xx)."""

    def register(func: Example) -> Example:
        EXAMPLES[f"{method} {route} {status or '2xx'} {func.__name__}"] = (method, route, status, func)
        return func

    return register


@example("GET", "/health", 200)
def healthy(http: Http) -> Any:
    return http("GET", "/health", token=None)


@example("GET", "/health", 503)
def a_dependency_down(http: Http) -> Any:
    ddb, http.svc.ddb = http.svc.ddb, Mock(**{"describe_table.side_effect": RuntimeError("down")})
    try:
        return http("GET", "/health", token=None)
    finally:
        http.svc.ddb = ddb


@example("GET", "/openapi.json", 200)
def the_document(http: Http) -> Any:
    response = http("GET", "/openapi.json", token=None)
    assert json.loads(response.body) == DOC
    return response


@example("GET", "/admin", 200)
def the_dashboard(http: Http) -> Any:
    return http("GET", "/admin", token=None)


@example("GET", "/ping", 200)
def a_ping(http: Http) -> Any:
    return http("GET", "/ping", token=None)


@example("POST", "/v1/jobs", 202)
def a_webhook_job(http: Http) -> Any:
    return http("POST", "/v1/jobs", WEBHOOK)


@example("POST", "/v1/jobs", 202)
def a_webhook_job_to_a_host_name(http: Http) -> Any:
    return http("POST", "/v1/jobs", {**WEBHOOK, "payload": {"url": "https://hooks.example.com/x", "body": {}}})


@example("POST", "/v1/jobs", 202)
def a_delayed_sms_job(http: Http) -> Any:
    payload = {"phone_number": "+15551234567", "message": "hi"}
    return http("POST", "/v1/jobs", {"type": "sms", "payload": payload, "delay_seconds": 1200, "priority": "high"})


@example("POST", "/v1/jobs", 202)
def an_email_job(http: Http) -> Any:
    payload = {"to": ["a@example.com"], "subject": "s", "text": "t", "html": "<p>t</p>"}
    return http("POST", "/v1/jobs", {"type": "email", "payload": payload, "max_attempts": 3, "backoff_seconds": 5})


@example("POST", "/v1/jobs", 200)
def the_same_idempotency_key_again(http: Http) -> Any:
    http.job(idempotency_key="doc-example")
    return http("POST", "/v1/jobs", {**WEBHOOK, "idempotency_key": "doc-example"})


@example("POST", "/v1/jobs", 202)
def the_operator_naming_an_org(http: Http) -> Any:
    return http("POST", "/v1/jobs", {**WEBHOOK, "org_id": "org-b"}, token="operator")


@example("POST", "/v1/jobs", 400)
def the_operator_naming_no_org(http: Http) -> Any:
    return http("POST", "/v1/jobs", WEBHOOK, token="operator")


@example("POST", "/v1/jobs", 400)
def an_unknown_type(http: Http) -> Any:
    return http("POST", "/v1/jobs", {"type": "fax", "payload": {}})


@example("POST", "/v1/jobs", 400)
def an_unknown_field(http: Http) -> Any:
    return http("POST", "/v1/jobs", {**WEBHOOK, "colour": "blue"})


@example("POST", "/v1/jobs", 400)
def malformed_json(http: Http) -> Any:
    return http("POST", "/v1/jobs", raw='{"type": ')


@example("POST", "/v1/jobs", 400)
def json_nested_too_deeply(http: Http) -> Any:
    return http("POST", "/v1/jobs", raw="[" * 5000 + "]" * 5000)


@example("POST", "/v1/jobs", 400)
def not_a_number_in_the_body(http: Http) -> Any:
    return http("POST", "/v1/jobs", raw='{"type": "webhook", "payload": {"url": "http://127.0.0.1:9/", "body": NaN}}')


@example("POST", "/v1/jobs", 413)
def a_body_over_256_kib(http: Http) -> Any:
    return http("POST", "/v1/jobs", {**WEBHOOK, "payload": {**WEBHOOK["payload"], "body": "x" * MAX_BODY_BYTES}})


@example("POST", "/v1/jobs", 401)
def no_token(http: Http) -> Any:
    return http("POST", "/v1/jobs", WEBHOOK, token=None)


@example("POST", "/v1/jobs", 401)
def an_unknown_token(http: Http) -> Any:
    return http("POST", "/v1/jobs", WEBHOOK, token="hrld_nope")


@example("POST", "/v1/jobs", 503)
def the_queue_unavailable(http: Http) -> Any:
    queue, http.svc.jobs.queue = http.svc.jobs.queue, Mock(spec=JobQueue, **{"send.side_effect": RuntimeError("down")})
    try:
        return http("POST", "/v1/jobs", WEBHOOK)
    finally:
        http.svc.jobs.queue = queue


@example("GET", "/v1/jobs", 200)
def a_page_of_jobs(http: Http) -> Any:
    http.job()
    http.job()
    response = http("GET", "/v1/jobs?limit=1&status=queued&type=webhook")
    assert json.loads(response.body)["next_cursor"]
    return response


@example("GET", "/v1/jobs", 503)
def the_token_table_unreachable(http: Http) -> Any:
    down = Mock(spec=TokenStore, **{"resolve.side_effect": EndpointConnectionError(endpoint_url="http://ddb")})
    tokens, http.svc.tokens = http.svc.tokens, down
    try:
        response = http("GET", "/v1/jobs")
        assert response.headers.get("Retry-After") == "1"
        return response
    finally:
        http.svc.tokens = tokens


@example("GET", "/v1/jobs", 400)
def an_unknown_status(http: Http) -> Any:
    return http("GET", "/v1/jobs?status=lost")


@example("GET", "/v1/jobs", 400)
def a_forged_cursor(http: Http) -> Any:
    return http("GET", "/v1/jobs?cursor=not-a-cursor")


@example("GET", "/v1/jobs", 401)
def listing_without_a_token(http: Http) -> Any:
    return http("GET", "/v1/jobs", token=None)


@example("GET", "/v1/jobs/{job_id}", 200)
def a_job(http: Http) -> Any:
    return http("GET", f"/v1/jobs/{http.job()['job_id']}")


@example("GET", "/v1/jobs/{job_id}", 404)
def another_orgs_job(http: Http) -> Any:
    return http("GET", f"/v1/jobs/{http.job()['job_id']}", token="member-b")


@example("GET", "/v1/jobs/{job_id}", 200)
def an_escalation_job_by_its_percent_encoded_id(http: Http) -> Any:
    http("POST", "/v1/incidents/inc-9/escalations", ESCALATION)
    return http("GET", "/v1/jobs/incident%3Ainc-9%3Alevel%3A1%3Arepeat%3A0")


@example("GET", "/v1/jobs/{job_id}", 404)
def a_job_id_too_long_for_the_table(http: Http) -> Any:
    return http("GET", "/v1/jobs/" + "%F0%9F%99%82" * 200)


@example("DELETE", "/v1/jobs/{job_id}", 200)
def cancelling_a_queued_job(http: Http) -> Any:
    return http("DELETE", f"/v1/jobs/{http.job()['job_id']}")


@example("DELETE", "/v1/jobs/{job_id}", 409)
def cancelling_twice(http: Http) -> Any:
    job_id = http.job(delay_seconds=1200)["job_id"]
    http("DELETE", f"/v1/jobs/{job_id}")
    return http("DELETE", f"/v1/jobs/{job_id}")


@example("DELETE", "/v1/jobs/{job_id}", 404)
def cancelling_an_unknown_job(http: Http) -> Any:
    return http("DELETE", "/v1/jobs/job_missing")


@example("GET", "/v1/webhook-secret", 200)
def the_webhook_secret(http: Http) -> Any:
    return http("GET", "/v1/webhook-secret", token="admin-a")


@example("GET", "/v1/webhook-secret", 403)
def the_webhook_secret_as_a_member(http: Http) -> Any:
    return http("GET", "/v1/webhook-secret")


@example("POST", "/v1/webhook-secret/rotate", 200)
def rotating_the_secret(http: Http) -> Any:
    return http("POST", "/v1/webhook-secret/rotate", token="admin-a")


@example("POST", "/v1/webhook-secret/rotate", 403)
def rotating_as_a_member(http: Http) -> Any:
    return http("POST", "/v1/webhook-secret/rotate", {})


ALERT = {
    "user_id": "u-1",
    "phone_number": "+15551234567",
    "message": "Freezer 3 is warm",
    "alert_type": "temperature",
    "severity": "critical",
}
ESCALATION = {"level": 1, "repeat": 0, "delay_seconds": 1200, "contact": {"phone_number": "+15551234567"}}


@example("POST", "/v1/alerts/{alert_id}/notify", 202)
def an_alert(http: Http) -> Any:
    return http("POST", "/v1/alerts/a-1/notify", ALERT)


@example("POST", "/v1/alerts/{alert_id}/notify", 400)
def an_alert_to_a_bad_number(http: Http) -> Any:
    return http("POST", "/v1/alerts/a-1/notify", {**ALERT, "phone_number": "555-1234"})


@example("POST", "/v1/incidents/{incident_id}/escalations", 201)
def a_new_escalation(http: Http) -> Any:
    return http("POST", "/v1/incidents/inc-1/escalations", ESCALATION)


@example("POST", "/v1/incidents/{incident_id}/escalations", 200)
def the_same_escalation_again(http: Http) -> Any:
    http("POST", "/v1/incidents/inc-2/escalations", ESCALATION)
    return http("POST", "/v1/incidents/inc-2/escalations", ESCALATION)


@example("POST", "/v1/incidents/{incident_id}/escalations", 400)
def an_escalation_without_a_contact(http: Http) -> Any:
    return http("POST", "/v1/incidents/inc-3/escalations", {**ESCALATION, "contact": {}})


@example("DELETE", "/v1/incidents/{incident_id}/escalations", 200)
def acknowledging_an_incident(http: Http) -> Any:
    http("POST", "/v1/incidents/inc-4/escalations", ESCALATION)
    response = http("DELETE", "/v1/incidents/inc-4/escalations")
    assert json.loads(response.body)["cancelled"] == ["incident:inc-4:level:1:repeat:0"]
    return response


RECIPIENT = {
    "email": "ana@example.com",
    "phone_number": "+15551234567",
    "timezone": "America/Chicago",
    "digests": ["daily", "weekly"],
    "quiet_hours": {"start": "22:00", "end": "07:00"},
}


@example("PUT", "/v1/recipients/{user_id}", 201)
def a_new_recipient(http: Http) -> Any:
    return http("PUT", "/v1/recipients/ana", RECIPIENT)


@example("PUT", "/v1/recipients/{user_id}", 200)
def replacing_a_recipient(http: Http) -> Any:
    http("PUT", "/v1/recipients/bo", RECIPIENT)
    return http("PUT", "/v1/recipients/bo", {**RECIPIENT, "digests": ["monthly"]})


@example("PUT", "/v1/recipients/{user_id}", 400)
def a_recipient_in_no_timezone(http: Http) -> Any:
    return http("PUT", "/v1/recipients/cy", {**RECIPIENT, "timezone": "Mars/Olympus"})


@example("GET", "/v1/recipients", 200)
def the_recipients(http: Http) -> Any:
    http("PUT", "/v1/recipients/di", RECIPIENT)
    return http("GET", "/v1/recipients?limit=5")


@example("GET", "/v1/recipients/{user_id}", 200)
def a_recipient(http: Http) -> Any:
    http("PUT", "/v1/recipients/ed", RECIPIENT)
    return http("GET", "/v1/recipients/ed")


@example("GET", "/v1/recipients/{user_id}", 404)
def an_unknown_recipient(http: Http) -> Any:
    return http("GET", "/v1/recipients/nobody")


@example("GET", "/v1/recipients/{user_id}", 400)
def a_user_id_that_is_not_utf8(http: Http) -> Any:
    return http("GET", "/v1/recipients/%ff")


@example("DELETE", "/v1/recipients/{user_id}", 200)
def removing_a_recipient(http: Http) -> Any:
    http("PUT", "/v1/recipients/fi", RECIPIENT)
    return http("DELETE", "/v1/recipients/fi")


@example("POST", "/v1/digests/run", 202)
def running_a_digest(http: Http) -> Any:
    return http("POST", "/v1/digests/run", {"kind": "daily"}, token="admin-a")


@example("POST", "/v1/digests/run", 403)
def running_a_digest_as_a_member(http: Http) -> Any:
    return http("POST", "/v1/digests/run", {"kind": "daily"})


@example("GET", "/v1/admin/queues", 200)
def the_queues(http: Http) -> Any:
    return http("GET", "/v1/admin/queues", token="admin-a")


@example("GET", "/v1/admin/queues", 403)
def the_queues_as_a_member(http: Http) -> Any:
    return http("GET", "/v1/admin/queues")


@example("GET", "/v1/admin/queues/{name}/dead-letters", 200)
def the_dead_letters(http: Http) -> Any:
    return http("GET", "/v1/admin/queues/herald-local-normal/dead-letters?limit=10", token="admin-a")


@example("GET", "/v1/admin/queues/{name}/dead-letters", 404)
def the_dead_letters_of_no_queue(http: Http) -> Any:
    return http("GET", "/v1/admin/queues/no-such-queue/dead-letters", token="admin-a")


@example("POST", "/v1/admin/queues/{name}/redrive", 200)
def a_dry_run_redrive(http: Http) -> Any:
    return http("POST", "/v1/admin/queues/herald-local-normal/redrive", {"dry_run": True}, token="admin-a")


@example("POST", "/v1/admin/queues/{name}/redrive", 202)
def a_redrive(http: Http) -> Any:
    return http("POST", "/v1/admin/queues/herald-local-normal/redrive", {"max_per_second": 10}, token="admin-a")


@example("GET", "/v1/admin/queues/{name}/redrive/{redrive_id}", 200)
def a_redrives_progress(http: Http) -> Any:
    started = http("POST", "/v1/admin/queues/herald-local-normal/redrive", {}, token="admin-a")
    redrive_id = json.loads(started.body)["redrive_id"]
    return http("GET", f"/v1/admin/queues/herald-local-normal/redrive/{redrive_id}", token="admin-a")


@example("GET", "/v1/admin/queues/{name}/redrive/{redrive_id}", 404)
def an_unknown_redrive(http: Http) -> Any:
    return http("GET", "/v1/admin/queues/herald-local-normal/redrive/rd-missing", token="admin-a")


@pytest.fixture(scope="module")
def http() -> Iterator[Http]:
    from chalice.test import Client

    with in_process_app() as (app, svc), Client(app) as client:
        yield Http(client, svc)


def test_every_documented_operation_has_a_representative_example() -> None:
    covered = {(method, route) for method, route, _, _ in EXAMPLES.values()}
    assert sorted(set(OPERATIONS) - covered) == []


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_given_a_representative_request_then_the_app_answers_as_documented(name: str, http: Http) -> None:
    method, route, status, request = EXAMPLES[name]
    if (method, route) not in app_routes():
        pytest.xfail(NOT_BUILT)
    response = request(http)
    body = response.body.decode(errors="replace") if isinstance(response.body, bytes) else str(response.body)
    if status is None:
        assert 200 <= response.status_code < 300, body[:500]
    else:
        assert response.status_code == status, body[:500]
    problems = response_problems(DOC, method, route, response.status_code, response.headers, response.body or b"")
    assert problems == [], body[:500]


SAMPLE_PATH = {
    "job_id": "job_1",
    "alert_id": "a-1",
    "incident_id": "inc-1",
    "user_id": "u-1",
    "name": "normal",
    "redrive_id": "rd_1",
}


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=_ids(OPERATIONS))
def test_the_documented_role_is_the_one_the_app_enforces(method: str, path: str, http: Http) -> None:
    """Admin routes answer a member 403; member routes let a member past the role check; public
    routes need no token."""
    if (method, path) not in app_routes():
        pytest.xfail(NOT_BUILT)
    operation = DOC["paths"][path][method.lower()]
    target = path.format(**SAMPLE_PATH)
    body = {} if "requestBody" in operation else None
    if operation.get("security") == []:
        assert http(method, target, body, token=None).status_code not in (401, 403)
        return
    response = http(method, target, body, token="member-a")
    if operation.get("x-herald-role") == "admin":
        assert response.status_code == 403, response.body
    else:
        assert response.status_code not in (401, 403), response.body
    assert http(method, target, body, token=None).status_code == 401
