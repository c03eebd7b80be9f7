"""Fixtures for the process executor's conformance tests: deploy small functions, invoke them.

Everything a test creates is deleted by the factory that created it, so tests can run against a
long-lived local cloud without leaving functions, queues or event source mappings behind.
``local_cloud`` comes from tests/conftest.py.
"""

from __future__ import annotations

import base64
import io
import json
import textwrap
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from typing import Any

import pytest

ROLE = "arn:aws:iam::000000000000:role/lambda-role"


# --- helpers ------------------------------------------------------------------------------------


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll until ``predicate()`` is truthy; return its value, or fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


@pytest.fixture(name="wait_until")
def wait_until_fixture() -> Callable[..., Any]:
    return wait_until


@dataclass
class Invoked:
    payload: Any
    error: str | None  # FunctionError ("Unhandled") or None
    logs: str  # the LogType=Tail log (last 4 KB)


@pytest.fixture
def cleanup() -> Iterator[Callable[..., None]]:
    """Register ``fn(*args, **kwargs)`` for teardown: last registered runs first, errors ignored."""
    with ExitStack() as stack:

        def add(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
            def quietly() -> None:
                with suppress(Exception):
                    fn(*args, **kwargs)

            stack.callback(quietly)

        yield add


@pytest.fixture
def lambda_client(local_cloud: Any) -> Any:
    return local_cloud.client("lambda")


@pytest.fixture
def make_function(lambda_client: Any, cleanup: Callable[..., None]) -> Callable[..., str]:
    """Factory: deploy a python3.11 function from source strings, wait until it is Active."""

    def make(
        code: str | None = None,
        *,
        files: dict[str, str] | None = None,
        handler: str = "app.handler",
        timeout: int = 3,
        memory: int = 128,
        env: dict[str, str] | None = None,
        runtime: str = "python3.11",
        expect_state: str = "Active",
    ) -> str:
        sources = dict(files or {})
        if code is not None:
            sources["app.py"] = code
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w") as zf:
            for path, source in sources.items():
                zf.writestr(path, textwrap.dedent(source))
        name = f"hx-exec-{uuid.uuid4().hex[:10]}"
        lambda_client.create_function(
            FunctionName=name,
            Runtime=runtime,
            Role=ROLE,
            Handler=handler,
            Code={"ZipFile": archive.getvalue()},
            Timeout=timeout,
            MemorySize=memory,
            Environment={"Variables": env or {}},
        )
        if expect_state != "Failed":
            # LocalStack 2026.3 cannot delete (nor update) a Failed version: DeleteFunction
            # answers 500 "Unable to find version manager". Such a stub stays until restart.
            cleanup(lambda_client.delete_function, FunctionName=name)

        def settled() -> dict[str, Any] | None:
            conf = lambda_client.get_function_configuration(FunctionName=name)
            return conf if conf["State"] != "Pending" else None

        conf = wait_until(settled, 30, f"function {name} to leave Pending")
        assert conf["State"] == expect_state, conf.get("StateReason")
        return name

    return make


@pytest.fixture
def invoke(lambda_client: Any) -> Callable[..., Invoked]:
    def call(name: str, event: Any = None) -> Invoked:
        response = lambda_client.invoke(FunctionName=name, Payload=json.dumps(event or {}), LogType="Tail")
        raw = response["Payload"].read()
        return Invoked(
            payload=json.loads(raw) if raw else None,
            error=response.get("FunctionError"),
            logs=base64.b64decode(response.get("LogResult", "")).decode(),
        )

    return call


@pytest.fixture
def make_queue(local_cloud: Any, cleanup: Callable[..., None]) -> Callable[..., tuple[str, str]]:
    """Factory: create an SQS queue, return (url, arn)."""
    sqs = local_cloud.client("sqs")

    def make(attributes: dict[str, str] | None = None) -> tuple[str, str]:
        url = sqs.create_queue(QueueName=f"hx-exec-{uuid.uuid4().hex[:10]}", Attributes=attributes or {})["QueueUrl"]
        cleanup(sqs.delete_queue, QueueUrl=url)
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        return url, arn["Attributes"]["QueueArn"]

    return make
