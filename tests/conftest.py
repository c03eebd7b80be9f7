"""Fixtures shared by every suite: the local cloud (started if needed, stopped if we started it),
the deployed stack, API clients per demo token, and a local webhook receiver."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.api import Api
from tests.support.cloud import LocalCloud, cloud, cloud_healthy, deploy_stack, stray_processes


@pytest.fixture(scope="session")
def local_cloud() -> Iterator[LocalCloud]:
    """The local cloud: reused when it runs, else started here and stopped at the end."""
    started = False
    if not cloud_healthy():
        cloud("up")
        started = True
    yield LocalCloud()
    if started and not os.environ.get("HERALD_KEEP_CLOUD"):
        cloud("down")
        # `make down` must leave nothing behind: no LocalStack, DynamoDB Local or Lambda process.
        leftovers = stray_processes()
        assert not leftovers, "processes left after `cloud.py down`:\n" + "\n".join(leftovers)


@pytest.fixture(scope="session")
def stack(local_cloud: LocalCloud) -> dict[str, Any]:
    return deploy_stack()


@pytest.fixture(scope="session")
def orgs(stack: dict[str, Any]) -> list[str]:
    return sorted(stack["tokens"])


@pytest.fixture(scope="session")
def api(stack: dict[str, Any]) -> Api:
    """Unauthenticated client; `.as_(token)` for a caller."""
    return Api(stack["api_url"])


@pytest.fixture(scope="session")
def member(stack: dict[str, Any], api: Api, orgs: list[str]) -> Api:
    return api.as_(stack["tokens"][orgs[0]]["member"])


@pytest.fixture(scope="session")
def admin(stack: dict[str, Any], api: Api, orgs: list[str]) -> Api:
    return api.as_(stack["tokens"][orgs[0]]["admin"])


@pytest.fixture(scope="session")
def other_member(stack: dict[str, Any], api: Api, orgs: list[str]) -> Api:
    return api.as_(stack["tokens"][orgs[1]]["member"])


@pytest.fixture(scope="session")
def other_admin(stack: dict[str, Any], api: Api, orgs: list[str]) -> Api:
    return api.as_(stack["tokens"][orgs[1]]["admin"])


@pytest.fixture(scope="session")
def operator(stack: dict[str, Any], api: Api) -> Api:
    return api.as_(stack["operator_token"])


@pytest.fixture
def receiver() -> Iterator[Any]:
    from tests.contract.webhook_receiver import WebhookReceiver

    server = WebhookReceiver()
    server.start()
    yield server
    server.stop()
