"""API fuzzing of the deployed local stack, driven by the document it serves (GET /openapi.json).

Thousands of Schemathesis-generated requests (valid and invalid) across every built route, with a
member or admin token as the route needs: no 5xx, every status documented, every body and
content type as documented (a 429, or the 503 of a dependency outage, is retried after its
Retry-After, a few times, and counted apart). The budget is split evenly over the operations:
HERALD_FUZZ_CASES in total (default 2,500: 2-4 minutes on the local stack; 20,000 with
HERALD_SOAK=1), HERALD_FUZZ_WORKERS requests in flight at once (default 12).

The requests act as a throwaway organization of their own (the suite's `tenants` fixture),
so whatever they create, rotate or cancel belongs to nobody else; what is still pending at the
end is cancelled. Redrives are forced to dry runs (a body that is not an object is left alone: a
400): a real one would hold its queue's redrive lock against other tests sharing the stack.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from schemathesis.core import NotSet

from tests.reliability.harness import Tenant
from tests.reliability.report import ReliabilityReport
from tests.support.api import Api
from tests.support.fuzz import (
    NOT_BUILT,
    Tally,
    app_routes,
    documented,
    fuzz_operation,
    load_document,
    load_schema,
    report,
    role_of,
)

pytestmark = pytest.mark.reliability

SOAK = os.environ.get("HERALD_SOAK") == "1"
TOTAL_CASES = int(os.environ.get("HERALD_FUZZ_CASES") or (20_000 if SOAK else 2_500))
MIN_PER_OPERATION = 25
WORKERS = int(os.environ.get("HERALD_FUZZ_WORKERS") or 12)  # requests in flight at once
OPERATIONS = documented(load_document())
REDRIVE = ("POST", "/v1/admin/queues/{name}/redrive")
RETRIES = 3


def _come_back_later(response: Any) -> bool:
    """A 429, or the 503 of a dependency outage (another test restarting DynamoDB Local, say): the
    document tells clients to retry after Retry-After, so the fuzzer does, as a careful client
    would, and counts it. A 5xx that is still there after the retries counts as one."""
    if response.status_code == 429:
        return True
    if response.status_code != 503 or "retry-after" not in response.headers:
        return False
    try:
        return bool(json.loads(response.content)["error"]["code"] == "service_unavailable")
    except (ValueError, KeyError, TypeError):
        return False


def _per_operation() -> int:
    """The budget over the built operations that take any input (the others have a case or two)."""
    doc = load_document()
    with_inputs = [
        (m, p)
        for m, p in OPERATIONS
        if (m, p) in app_routes() and {"parameters", "requestBody"} & set(doc["paths"][p][m.lower()])
    ]
    return max(MIN_PER_OPERATION, TOTAL_CASES // max(len(with_inputs), 1))


@pytest.fixture(scope="module")
def served(stack: dict[str, Any]) -> dict[str, Any]:
    with urllib.request.urlopen(f"{stack['api_url']}/openapi.json", timeout=30) as response:
        return dict(json.load(response))


@pytest.fixture(scope="module")
def fuzz_org(stack: dict[str, Any], tenants: Callable[[str], Tenant]) -> Iterator[dict[str, str]]:
    """A member and an admin token of a throwaway organization (removed by `tenants` at the end)."""
    tenant = tenants("fuzz")
    yield {"org_id": tenant.org_id, "member": tenant.member_token, "admin": tenant.admin_token}
    _cancel_pending(tenant.member)


def _cancel_pending(api: Api) -> None:
    for status in ("scheduled", "queued"):
        for _ in range(50):  # pages
            page = api.get(f"/v1/jobs?status={status}&limit=100")
            if page.status != 200 or not page.body["items"]:
                break
            for job in page.body["items"]:
                api.delete(f"/v1/jobs/{job['job_id']}")


@pytest.fixture(scope="module")
def tally(request: pytest.FixtureRequest, reliability_report: ReliabilityReport) -> Iterator[Tally]:
    counts = Tally()
    yield counts
    path = counts.write("deployed")
    reliability_report.record_fuzz(cases=counts.cases, server_errors=len(counts.server_errors))
    report(request.config, counts.summary("deployed stack") + f" [{path.name}]")


def test_the_deployed_api_serves_the_document_in_the_tree(served: dict[str, Any]) -> None:
    assert served == load_document()


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_given_generated_requests_then_no_5xx_and_every_answer_is_as_documented(
    method: str, path: str, stack: dict[str, Any], served: dict[str, Any], fuzz_org: dict[str, str], tally: Tally
) -> None:
    if (method, path) not in app_routes():
        pytest.skip(NOT_BUILT)
    role = role_of(served, method, path)
    headers = {"Authorization": f"Bearer {fuzz_org[role]}"} if role else {}
    sessions = threading.local()

    def send(case: Any) -> Any:
        if (method, path) == REDRIVE:  # no body is a real redrive too
            if isinstance(case.body, NotSet) or case.body is None:
                case.body, case.media_type = {}, "application/json"
            if isinstance(case.body, dict):
                case.body["dry_run"] = True
        if not hasattr(sessions, "session"):
            sessions.session = requests.Session()
        for attempt in range(RETRIES + 1):
            response = case.call(base_url=stack["api_url"], headers=headers, session=sessions.session, timeout=60)
            if not _come_back_later(response) or attempt == RETRIES:
                return response
            tally.retry(response.status_code)
            time.sleep(min(float((response.headers.get("retry-after") or ["1"])[0]), 5.0) * (attempt + 1))
        raise AssertionError("unreachable")

    fuzz_operation(load_schema(served), method, path, send, tally, _per_operation(), workers=WORKERS)
    assert not tally.server_errors
