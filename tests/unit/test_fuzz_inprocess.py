"""API fuzzing in-process, against the Chalice app over moto: no network, a small budget, so a
5xx on bad input is caught without the cloud.

1. Schemathesis cases from the published document (valid and invalid per the document), every
   answer checked against it: no 5xx, a documented status, body and content type as documented.
2. Hostile raw bodies on every route that takes one: bytes that are not JSON, deep nesting,
   NaN, huge or odd strings (NUL, lone surrogates, other scripts) in the real field names.

HERALD_FUZZ_EXAMPLES sets the examples per operation (default 15; 3 for one without inputs).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chalicelib.api.http import MAX_BODY_BYTES
from tests.support.chalice_wsgi import wsgi_app
from tests.support.fuzz import (
    NOT_BUILT,
    Tally,
    app_routes,
    documented,
    fuzz_operation,
    in_process_app,
    load_document,
    load_schema,
    report,
    role_of,
)
from tests.support.openapi_check import response_problems

DOC = load_document()
OPERATIONS = documented(DOC)
WITH_BODY = [(m, p) for m, p in OPERATIONS if "requestBody" in DOC["paths"][p][m.lower()]]
TOKENS = {"member": "member-a", "admin": "admin-a"}
EXAMPLES = int(os.environ.get("HERALD_FUZZ_EXAMPLES", "15"))
PATH_VALUES = {"alert_id": "a-1", "incident_id": "inc-1", "user_id": "u-1", "name": "normal", "job_id": "job_1"}


@pytest.fixture(scope="module")
def world() -> Iterator[tuple[Any, Any]]:
    with in_process_app() as (app, svc):
        yield app, svc


@pytest.fixture(scope="module")
def tally(request: pytest.FixtureRequest) -> Iterator[Tally]:
    counts = Tally()
    yield counts
    report(request.config, counts.summary("in-process"))


def _headers(method: str, path: str) -> dict[str, str]:
    role = role_of(DOC, method, path)
    return {"Authorization": f"Bearer {TOKENS[role]}"} if role else {}


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_given_generated_requests_then_no_5xx_and_every_answer_is_as_documented(
    method: str, path: str, world: tuple[Any, Any], tally: Tally
) -> None:
    if (method, path) not in app_routes():
        pytest.skip(NOT_BUILT)
    app = wsgi_app(world[0])
    headers = _headers(method, path)

    def send(case: Any) -> Any:
        return case.call(base_url="http://herald.test", app=app, headers=headers)

    operation = DOC["paths"][path][method.lower()]
    examples = EXAMPLES if operation.get("parameters") or "requestBody" in operation else 3
    fuzz_operation(load_schema(DOC), method, path, send, tally, examples)
    assert not tally.server_errors


# --- hostile raw bodies ----------------------------------------------------------------------
ODD_TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["\x00", "a\x00b", "\ud800", "\udfff", "🙂" * 300, "\u202e", "ﷺ", "\r\n\t", "%00", "' OR 1=1 --"]),
    st.integers(1_000, 20_000).map(lambda n: "é" * n),
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | ODD_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
NOT_QUITE_JSON = st.sampled_from(
    ['{"type": ', "NaN", "-Infinity", "1e999", '{"a": 1e400}', '"\\ud800"', "[" * 50_000, "\ufeff{}", "{}garbage", ""]
)


def _field_names(method: str, path: str) -> list[str]:
    schema = DOC["paths"][path][method.lower()]["requestBody"]["content"]["application/json"]["schema"]
    if "$ref" in schema:
        schema = DOC["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return sorted(schema.get("properties", {}))


def _raw_bodies(method: str, path: str) -> st.SearchStrategy[bytes]:
    names = _field_names(method, path)
    known = st.fixed_dictionaries({}, optional={name: JSON_VALUES for name in names}) if names else JSON_VALUES
    return st.one_of(
        st.binary(max_size=300),
        JSON_VALUES.map(json.dumps).map(str.encode),
        known.map(lambda body: json.dumps(body).encode("utf-8", "surrogatepass")),
        st.integers(500, 60_000).map(lambda depth: ("[" * depth + "]" * depth).encode()),
        NOT_QUITE_JSON.map(str.encode),
        st.just(b'{"x": "' + b"y" * MAX_BODY_BYTES + b'"}'),
    )


@pytest.mark.parametrize(("method", "path"), WITH_BODY, ids=[f"{m} {p}" for m, p in WITH_BODY])
def test_given_hostile_raw_bodies_then_no_5xx_and_the_error_is_as_documented(
    method: str, path: str, world: tuple[Any, Any], tally: Tally
) -> None:
    if (method, path) not in app_routes():
        pytest.skip(NOT_BUILT)
    from chalice.test import Client

    target = path.format(**PATH_VALUES)
    headers = {**_headers(method, path), "Content-Type": "application/json"}
    label = f"{method} {path} (raw bodies)"

    with Client(world[0]) as client:

        @given(body=_raw_bodies(method, path))
        @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def run(body: bytes) -> None:
            response = client.http.request(method, target, headers=headers, body=body)
            tally.record(label, response.status_code)
            assert response.status_code < 500, response.body[:300]
            assert response_problems(DOC, method, path, response.status_code, response.headers, response.body) == []

        run()
