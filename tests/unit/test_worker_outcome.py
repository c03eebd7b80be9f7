"""When a job's effect happened but its completion cannot be recorded (the table is down), the
outcome goes back on the queue, so the redelivery records it instead of repeating the effect."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError

from chalicelib.jobs.model import Envelope, EnvelopeError
from chalicelib.jobs.worker import OUTCOME_DELAY_S
from tests.unit.test_worker import Harness


@pytest.fixture
def h(svc: Any, monkeypatch: pytest.MonkeyPatch) -> Harness:
    monkeypatch.setattr("chalicelib.jobs.worker.OUTCOME_DELAY_S", 0)  # receivable at once (moto keeps delays)
    return Harness(svc)


def table_down(*_: Any, **__: Any) -> Any:
    raise EndpointConnectionError(endpoint_url="http://127.0.0.1:8000")


def test_given_the_table_down_after_the_effect_then_the_outcome_is_requeued_and_recorded_once(h, monkeypatch):
    job = h.enqueue()
    with monkeypatch.context() as patch:
        patch.setattr(h.store, "complete", table_down)
        response = h.run(h.receive())
    assert response == {"batchItemFailures": []}  # this message is done: the outcome travels on
    assert h.effects == [job.job_id] and h.job(job.job_id).status == "active"
    (message,) = h.receive()
    envelope = Envelope.from_json(message["Body"])
    assert envelope.outcome == {"status": "completed", "result": {"status_code": 200}}
    assert envelope.attempt == 1
    h.run([message])  # the table is back
    done = h.job(job.job_id)
    assert done.status == "completed" and done.result == {"status_code": 200} and done.attempts == 1
    assert h.effects == [job.job_id]  # the handler did not run again


def test_the_outcome_message_is_delayed(h, monkeypatch):
    monkeypatch.setattr("chalicelib.jobs.worker.OUTCOME_DELAY_S", OUTCOME_DELAY_S)
    sent: list[dict[str, Any]] = []
    real = h.svc.sqs.send_message
    monkeypatch.setattr(h.store, "complete", table_down)
    monkeypatch.setattr(h.queue._sqs, "send_message", lambda **kw: sent.append(kw) or real(**kw))
    h.enqueue()
    h.run(h.receive())
    assert sent[-1]["DelaySeconds"] == OUTCOME_DELAY_S and "outcome" in json.loads(sent[-1]["MessageBody"])


def test_an_outcome_of_an_attempt_that_is_not_the_current_one_is_dropped(h, monkeypatch):
    job = h.enqueue()
    with monkeypatch.context() as patch:
        patch.setattr(h.store, "complete", table_down)
        h.run(h.receive())
    (outcome,) = h.receive()
    # The attempt's lease ran out and another invocation took the job over: attempt 2, active.
    lease_s = h.svc.settings.worker_timeout_s + 30
    h.clock.advance(lease_s + 1)
    assert h.store.begin_attempt("org-a", job.job_id, lease_s=lease_s) is not None
    assert Envelope.from_json(outcome["Body"]).attempt == 1
    assert h.run([outcome]) == {"batchItemFailures": []}
    current = h.job(job.job_id)
    assert current.status == "active" and current.attempts == 2 and current.result is None
    assert h.effects == [job.job_id]


def test_when_the_outcome_cannot_be_queued_either_the_message_is_retried(h, monkeypatch):
    job = h.enqueue()
    monkeypatch.setattr(h.store, "complete", table_down)
    monkeypatch.setattr(h.queue, "send_outcome", table_down)
    response = h.run(h.receive())
    assert len(response["batchItemFailures"]) == 1
    assert h.effects == [job.job_id]  # the effect happened once; only its outcome is unrecorded
    assert h.job(job.job_id).status == "active" and h.job(job.job_id).attempts == 1


@pytest.mark.parametrize("outcome", [{"status": "dead"}, "completed", {"status": "completed", "result": [1]}])
def test_a_malformed_outcome_is_a_malformed_envelope(outcome):
    body = {
        "v": 1,
        "job_id": "j",
        "org_id": "o",
        "type": "webhook",
        "run_at": "2026-01-01T00:00:00.000Z",
        "outcome": outcome,
    }
    with pytest.raises(EnvelopeError) as err:
        Envelope.from_json(json.dumps(body))
    assert err.value.code == "malformed_envelope"
