"""The one place that builds AWS clients: lazily, once per process, never at import time.

boto3 honours `AWS_ENDPOINT_URL` and service-specific `AWS_ENDPOINT_URL_<SERVICE>` variables, so
the same code reaches LocalStack, DynamoDB Local or real AWS without a branch here.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

import boto3
from botocore.config import Config

_LOCK = threading.Lock()
_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 4},
    connect_timeout=3,
    read_timeout=10,
    max_pool_connections=32,
)


@functools.cache
def _session() -> boto3.session.Session:
    return boto3.session.Session()


@functools.cache
def client(service: str) -> Any:
    """A cached client for `service` (boto3 clients are thread-safe; sessions are not)."""
    with _LOCK:
        return _session().client(service, config=_CONFIG)


def reset() -> None:
    """Forget cached clients (tests that switch endpoints or moto contexts)."""
    client.cache_clear()
    _session.cache_clear()
