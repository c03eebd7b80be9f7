"""The `chaos` fault-injection job type: local stage only, never a public job type."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from chalicelib.handlers import build_handlers
from chalicelib.handlers.chaos import chaos_handler
from chalicelib.jobs.ledger import DeadLetterLedger
from chalicelib.jobs.service import JobService, NewJob
from chalicelib.jobs.worker import Worker
from chalicelib.services import Services
from tests.unit.test_worker import sqs_record


def on_stage(svc: Services, stage: str) -> Services:
    return dataclasses.replace(svc, settings=dataclasses.replace(svc.settings, stage=stage))


def test_the_chaos_type_is_registered_on_the_local_stage_only(svc):
    assert "chaos" in build_handlers(on_stage(svc, "local"))
    for stage in ("dev", "prod"):
        assert "chaos" not in build_handlers(on_stage(svc, stage))
        with pytest.raises(RuntimeError):
            chaos_handler(on_stage(svc, stage))


def test_the_public_api_refuses_the_chaos_type(client):
    response = client.http.post(
        "/v1/jobs",
        headers={"Authorization": "Bearer member-a", "Content-Type": "application/json"},
        body=json.dumps({"type": "chaos", "payload": {"action": "exit"}}),
    )
    assert response.status_code == 400
    assert json.loads(response.body)["error"]["details"][0]["field"] == "type"


def test_on_prod_a_chaos_message_is_an_unknown_type_dead_at_once_and_never_run(svc):
    prod = on_stage(svc, "prod")
    worker = Worker(
        svc.store, svc.queue, DeadLetterLedger(svc.ddb, svc.settings.table_name), build_handlers(prod), prod.settings
    )
    job, _ = JobService(svc.store, svc.queue).enqueue(NewJob(org_id="org-a", type="chaos", payload={"action": "exit"}))
    url = svc.queue.url_of("herald-local-normal")
    messages = svc.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    worker.handle_batch({"Records": [sqs_record(m) for m in messages]}, None, "normal")  # no SystemExit
    dead = svc.store.get("org-a", job.job_id)
    assert dead is not None and dead.status == "dead" and dead.error["code"] == "unknown_job_type"


def run_chaos(svc: Services, attempts: int, **payload: Any) -> dict[str, Any]:
    job, _ = JobService(svc.store, svc.queue).enqueue(NewJob(org_id="org-a", type="chaos", payload=payload))
    job.attempts = attempts
    return chaos_handler(svc)(job)


def test_exit_ends_the_process_on_the_first_attempts_then_completes(svc):
    with pytest.raises(SystemExit) as exited:
        run_chaos(svc, 1, action="exit", code=7)
    assert exited.value.code == 7
    with pytest.raises(SystemExit):
        run_chaos(svc, 2, action="exit", fail_attempts=2)
    assert run_chaos(svc, 2, action="exit") == {"chaos": "exit", "attempt": 2}


def test_sleep_sleeps_on_the_first_attempt_only(svc, monkeypatch):
    slept: list[float] = []
    monkeypatch.setattr("chalicelib.handlers.chaos.time.sleep", slept.append)
    assert run_chaos(svc, 1, action="sleep", seconds=0.5) == {"chaos": "sleep", "attempt": 1}
    assert run_chaos(svc, 2, action="sleep", seconds=0.5) == {"chaos": "sleep", "attempt": 2}
    assert slept == [0.5]
    run_chaos(svc, 1, action="sleep")  # outside an invocation: time left unknown, 5 s past it
    assert slept[-1] == 5.0
