from __future__ import annotations

from collections.abc import Iterator

import pytest

from chalicelib.services import Services
from tests.support.moto_stack import moto_services


@pytest.fixture
def svc() -> Iterator[Services]:
    """The whole service graph over moto (table, queues, demo tokens member-a/admin-a/...)."""
    with moto_services() as services:
        yield services


@pytest.fixture
def client(svc: Services) -> Iterator[object]:
    """Chalice's test client over the real app, backed by moto."""
    from chalice.test import Client

    from app import app

    with Client(app) as test_client:
        yield test_client
