"""The per-organization API rate limit: one conditional UpdateItem per request, 429 + Retry-After."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError

from chalicelib.api.ratelimit import RateLimiter
from chalicelib.auth import Principal
from chalicelib.config import LOCAL_API_RATE_PER_MINUTE, Settings
from chalicelib.services import Services
from tests.support.moto_stack import moto_services

A, B, OPERATOR = Principal("member", "org-a"), Principal("admin", "org-b"), Principal("operator", None)


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:  # a window start (divisible by 60)
        self.now = now

    def __call__(self) -> float:
        return self.now


def limiter(svc: Services, per_minute: int, clock: Clock) -> RateLimiter:
    return RateLimiter(svc.ddb, svc.settings.table_name, per_minute, clock=clock)


def test_the_limit_holds_per_organization_and_the_wait_is_the_rest_of_the_window(svc):
    clock = Clock()
    limit = limiter(svc, 3, clock)
    assert [limit(A) for _ in range(3)] == [None, None, None]
    clock.now += 15
    assert limit(A) == pytest.approx(45)
    assert limit(B) is None and limit(OPERATOR) is None  # other scopes keep their own count
    clock.now += 45  # the next window
    assert limit(A) is None


def test_one_update_item_per_request_and_the_counter_expires(svc, monkeypatch):
    calls: list[dict[str, Any]] = []
    real = svc.ddb.update_item

    def spy(**kw: Any) -> Any:
        calls.append(kw)
        return real(**kw)

    monkeypatch.setattr(svc.ddb, "update_item", spy)
    clock = Clock()
    limiter(svc, 10, clock)(A)
    assert len(calls) == 1
    item = svc.ddb.get_item(TableName=svc.settings.table_name, Key=calls[0]["Key"])["Item"]
    assert item["n"] == {"N": "1"} and int(item["expires_at"]["N"]) > clock.now + 60


def test_the_limiter_fails_open_when_dynamodb_is_unreachable(svc, monkeypatch):
    def down(**_: Any) -> Any:
        raise EndpointConnectionError(endpoint_url="http://127.0.0.1:8000")

    monkeypatch.setattr(svc.ddb, "update_item", down)
    assert limiter(svc, 1, Clock())(A) is None


def test_the_default_limit_is_per_stage_and_configurable():
    assert Settings.from_env({"HERALD_STAGE": "prod"}).api_rate_per_minute == 600
    assert Settings.from_env({"HERALD_STAGE": "dev"}).api_rate_per_minute == 600
    assert Settings.from_env({"HERALD_STAGE": "local"}).api_rate_per_minute == LOCAL_API_RATE_PER_MINUTE
    env = {"HERALD_STAGE": "prod", "HERALD_API_RATE_PER_MINUTE": "42"}
    assert Settings.from_env(env).api_rate_per_minute == 42


@pytest.fixture
def limited_client() -> Iterator[Any]:
    from chalice.test import Client

    from app import app

    with moto_services(HERALD_API_RATE_PER_MINUTE="3") as svc, Client(app) as client:
        # The limiter the API uses, with the clock held still: no window boundary mid-test.
        svc.rate_limiter = RateLimiter(svc.ddb, svc.settings.table_name, svc.settings.api_rate_per_minute, Clock())
        yield client


def get(client: Any, token: str | None, path: str = "/v1/jobs") -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.http.get(path, headers=headers)


def test_over_the_limit_the_api_answers_429_with_retry_after_and_the_contracts_body(limited_client):
    assert [get(limited_client, "member-a").status_code for _ in range(3)] == [200, 200, 200]
    refused = get(limited_client, "admin-a", "/v1/recipients")  # the organization's count, any route or role
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert json.loads(refused.body)["error"]["code"] == "rate_limited"
    assert get(limited_client, "member-b").status_code == 200  # another organization is not slowed


def test_unauthenticated_requests_do_not_spend_an_organizations_budget(limited_client):
    for _ in range(5):
        assert get(limited_client, None).status_code == 401
        assert get(limited_client, "hrld_unknown").status_code == 401
    assert get(limited_client, "member-a").status_code == 200
