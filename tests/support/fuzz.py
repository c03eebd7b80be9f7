"""API fuzzing from the published OpenAPI document, shared by the in-process and deployed runs.

Each documented operation gets Hypothesis-generated requests from Schemathesis: valid ones
(positive) and ones that break the document (negative: wrong types, out-of-range values, missing
or unknown fields, mangled auth). Every answer must be no 5xx, a documented status code, and a
body and content type that match what the document says for that status.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.moto_stack import moto_services

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = ROOT / "chalicelib" / "openapi.json"
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance, content_type_conformance]
METHODS = ("get", "put", "post", "delete", "patch")
NOT_BUILT = "route not built yet"


def load_document() -> dict[str, Any]:
    return dict(json.loads(DOCUMENT.read_text()))


def documented(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """(METHOD, path) of every documented operation, in document order."""
    return [(method.upper(), path) for path, item in doc["paths"].items() for method in item if method in METHODS]


def app_routes() -> set[tuple[str, str]]:
    """(METHOD, path) of every route the Chalice app has."""
    from app import app

    return {(method.upper(), path) for path, entries in app.routes.items() for method in entries}


def role_of(doc: dict[str, Any], method: str, path: str) -> str | None:
    """The role the document says an operation needs (None: public)."""
    operation = doc["paths"][path][method.lower()]
    return None if operation.get("security") == [] else str(operation.get("x-herald-role", "member"))


@dataclass
class Tally:
    """What a fuzz run did: cases per operation and status, and the 5xx it saw."""

    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    retried: Counter[int] = field(default_factory=Counter)  # 429/503 answers a careful client retries
    started: float = field(default_factory=time.monotonic)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def retry(self, status: int) -> None:
        with self._lock:
            self.retried[status] += 1

    def record(self, label: str, status: int) -> None:
        with self._lock:
            self.statuses[(label, status)] += 1
            if status >= 500:
                self.server_errors.append(f"{label} -> {status}")

    @property
    def cases(self) -> int:
        return sum(self.statuses.values())

    @property
    def operations(self) -> int:
        return len({label for label, _ in self.statuses})

    def summary(self, name: str) -> str:
        by_status = Counter[int]()
        for (_, status), n in self.statuses.items():
            by_status[status] += n
        spread = ", ".join(f"{status}: {n}" for status, n in sorted(by_status.items()))
        retried = ", ".join(f"{n} x {status}" for status, n in sorted(self.retried.items()))
        return (
            f"[fuzz] {name}: {self.cases} cases over {self.operations} operations in "
            f"{time.monotonic() - self.started:.0f} s, 5xx seen: {len(self.server_errors)} ({spread})"
            + (f"; retried after Retry-After: {retried}" if retried else "")
        )

    def write(self, name: str) -> Path:
        out = Path(os.environ.get("HERALD_TEST_OUTPUT") or ROOT / "test-output")
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"fuzz-{name}.json"
        path.write_text(
            json.dumps(
                {
                    "cases": self.cases,
                    "operations": self.operations,
                    "server_errors": len(self.server_errors),
                    "retried": {str(status): n for status, n in sorted(self.retried.items())},
                    "by_operation": {f"{label} {status}": n for (label, status), n in sorted(self.statuses.items())},
                },
                indent=2,
            )
            + "\n"
        )
        return path


def fuzz_operation(
    schema: Any,
    method: str,
    path: str,
    send: Callable[[Case], Any],
    tally: Tally,
    max_examples: int,
    workers: int = 1,
) -> None:
    """Send about `max_examples` generated requests (positive and negative) to one operation.

    With `workers` > 1 (a remote target), cases are still generated on this thread (Hypothesis
    and Schemathesis build strategies with `compile`, which CPython 3.11 does not do safely from
    several threads at once) while a pool sends and checks them; the first failure is raised
    with the count of the others, each with its curl reproduction (no shrinking in this mode).
    """
    operation = schema[path][method]
    label = f"{method} {path}"
    strategy = operation.as_strategy(generation_mode=GenerationMode.POSITIVE) | operation.as_strategy(
        generation_mode=GenerationMode.NEGATIVE
    )
    budget = settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
    )

    def check(case: Case) -> None:
        response = send(case)
        tally.record(label, response.status_code)
        case.validate_response(response, checks=CHECKS)

    if workers == 1:
        budget(given(case=strategy)(check))()
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures: list[Future[None]] = []
        budget(given(case=strategy)(lambda case: futures.append(pool.submit(check, case))))()
    errors = [error for error in (f.exception() for f in futures) if error is not None]
    if errors:
        errors[0].add_note(f"{label}: {len(errors)} of {len(futures)} cases failed; this is the first.")
        raise errors[0]


@contextmanager
def in_process_app() -> Iterator[tuple[Any, Any]]:
    """(the Chalice app, its Services) over moto, with the demo tokens of tests/support/moto_stack.py."""
    with moto_services() as svc:
        # moto has no SQS message move tasks: none is ever running, and one started ends at once.
        svc.sqs.list_message_move_tasks = lambda **_: {"Results": []}
        svc.sqs.start_message_move_task = lambda **_: {"TaskHandle": "moto-task"}
        from app import app

        yield app, svc


def load_schema(doc: dict[str, Any]) -> Any:
    return schemathesis.openapi.from_dict(doc)


def report(config: Any, line: str) -> None:
    """A line at the end of pytest's output (after the summary), shown even with -q."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    config.add_cleanup(lambda: reporter.write_line(line) if reporter is not None else print(line))
