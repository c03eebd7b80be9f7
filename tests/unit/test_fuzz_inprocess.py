"""API fuzzing in-process: Schemathesis cases from the published document against the Chalice
app over moto. No network and a small budget, so a 5xx on bad input is caught without the cloud.

HERALD_FUZZ_EXAMPLES sets the examples per operation (default 20).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.chalice_wsgi import wsgi_app
from tests.support.fuzz import (
    NOT_BUILT,
    Tally,
    app_routes,
    documented,
    in_process_app,
    fuzz_operation,
    load_document,
    load_schema,
    report,
    role_of,
)

DOC = load_document()
OPERATIONS = documented(DOC)
TOKENS = {"member": "member-a", "admin": "admin-a"}
EXAMPLES = int(os.environ.get("HERALD_FUZZ_EXAMPLES", "20"))


@pytest.fixture(scope="module")
def app_under_test() -> Iterator[Any]:
    with in_process_app() as (app, _):
        yield wsgi_app(app)


@pytest.fixture(scope="module")
def tally(request: pytest.FixtureRequest) -> Iterator[Tally]:
    counts = Tally()
    yield counts
    report(request.config, counts.summary("in-process"))


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_given_generated_requests_then_no_5xx_and_every_answer_is_as_documented(
    method: str, path: str, app_under_test: Any, tally: Tally
) -> None:
    if (method, path) not in app_routes():
        pytest.skip(NOT_BUILT)
    role = role_of(DOC, method, path)
    headers = {"Authorization": f"Bearer {TOKENS[role]}"} if role else {}

    def send(case: Any) -> Any:
        return case.call(base_url="http://herald.test", app=app_under_test, headers=headers)

    fuzz_operation(load_schema(DOC), method, path, send, tally, EXAMPLES)
    assert not tally.server_errors
