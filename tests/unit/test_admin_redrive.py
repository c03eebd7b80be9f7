"""Redrives over moto: dry runs, filtered subsets, the whole queue, and the bookkeeping that keeps
every dead letter moved exactly once (routes through the app; the worker runs in-process)."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from chalicelib.errors import FatalError
from chalicelib.ops.records import RedriveStore
from chalicelib.services import Services
from tests.unit.admin_harness import OpsHarness

NORMAL = "herald-local-normal"
NORMAL_DLQ = "herald-local-normal-dlq"
REDRIVE = f"/v1/admin/queues/{NORMAL}/redrive"


def call(client: Any, method: str, path: str, token: str = "admin-a", body: Any = None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    payload = json.dumps(body) if body is not None else None
    response = getattr(client.http, method.lower())(path, headers=headers, body=payload)
    return response.status_code, json.loads(response.body) if response.body else None


@pytest.fixture
def ops(svc: Services) -> OpsHarness:
    return OpsHarness(svc)


def ledger_ids(ops: OpsHarness, org: str | None = None) -> set[str]:
    return {entry["job_id"] for entry in ops.svc.ledger.list(NORMAL, org)}


def finished(client: Any, ops: OpsHarness, started: dict[str, Any], token: str = "admin-a") -> dict[str, Any]:
    ops.drain()
    status, record = call(client, "GET", f"{REDRIVE}/{started['redrive_id']}", token=token)
    assert status == 200, record
    return dict(record)


def test_a_dry_run_counts_the_matching_dead_letters_and_moves_nothing(client, ops):
    ops.kill("org-a", 3, code="http_500")
    ops.kill("org-a", 1, code="http_400")
    ops.kill("org-b", 2, code="http_500")
    status, body = call(client, "POST", REDRIVE, body={"error_code": "http_500", "dry_run": True})
    assert status == 200 and body["to_move"] == 3 and body["moved"] == 0 and body["redrive_id"] is None
    status, body = call(client, "POST", REDRIVE, token="operator", body={"dry_run": True})
    assert status == 200 and body["to_move"] == 6  # the whole DLQ
    assert ops.invocations == [] and ops.depth(NORMAL_DLQ).visible == 6 and len(ledger_ids(ops)) == 6
    assert ops.take(NORMAL) == []


def test_an_admin_redrive_moves_its_own_matching_dead_letters_once_and_they_run_from_attempt_1(client, ops):
    mine = ops.kill("org-a", 3, code="http_500")
    other_code = ops.kill("org-a", 1, code="http_400")
    theirs = ops.kill("org-b", 2, code="http_500")
    status, started = call(client, "POST", REDRIVE, body={"error_code": "http_500", "max_per_second": 100})
    assert status == 202 and started["status"] == "running" and started["to_move"] == 3
    assert started["mode"] == "filtered" and started["filters"] == {"org_id": "org-a", "error_code": "http_500"}
    record = finished(client, ops, started)
    assert (record["status"], record["moved"], record["to_move"]) == ("completed", 3, 3)
    # The three reset jobs were sent once each; the others are still dead letters.
    for job in mine:
        assert ops.svc.store.get("org-a", job.job_id).status == "queued"
    assert ledger_ids(ops) == {j.job_id for j in other_code + theirs}
    assert ops.depth(NORMAL_DLQ).visible == 3 and ops.depth(NORMAL_DLQ).in_flight == 0  # released at once
    ops.work()  # the worker runs them again
    for job in mine:
        again = ops.svc.store.get("org-a", job.job_id)
        assert again.status == "completed" and again.attempts == 1
    assert Counter(ops.delivered) == Counter(j.job_id for j in mine)


def test_a_redrive_by_job_id_moves_that_one_job(client, ops):
    jobs = ops.kill("org-a", 3)
    target = jobs[1]
    status, started = call(client, "POST", REDRIVE, body={"job_id": target.job_id})
    assert status == 202 and started["to_move"] == 1
    assert finished(client, ops, started)["moved"] == 1
    assert ops.sent_counts(NORMAL) == Counter({target.job_id: 1})
    assert ledger_ids(ops) == {jobs[0].job_id, jobs[2].job_id} and ops.depth(NORMAL_DLQ).visible == 2


def test_a_redrive_started_again_moves_nothing_twice(client, ops):
    jobs = ops.kill("org-a", 4)
    _, first = call(client, "POST", REDRIVE, body={})
    finished(client, ops, first)
    status, second = call(client, "POST", REDRIVE, body={})
    assert status == 202 and second["status"] == "completed" and second["to_move"] == 0
    ops.drain()
    assert ops.sent_counts(NORMAL) == Counter({j.job_id: 1 for j in jobs})


def test_while_one_runs_a_second_redrive_of_the_queue_is_a_409(client, ops):
    ops.kill("org-a", 2)
    ops.kill("org-b", 1)
    _, first = call(client, "POST", REDRIVE, body={})  # not run yet: still running
    status, body = call(client, "POST", REDRIVE, body={"job_id": "x"})
    assert (
        status == 409 and body["error"]["code"] == "redrive_running" and first["redrive_id"] in body["error"]["message"]
    )
    status, body = call(client, "POST", REDRIVE, token="admin-b", body={})
    assert status == 409 and first["redrive_id"] not in body["error"]["message"]  # org-a's id stays hidden
    finished(client, ops, first)
    assert call(client, "POST", REDRIVE, token="admin-b", body={})[0] == 202


def test_another_orgs_redrive_is_a_404(client, ops):
    ops.kill("org-a", 1)
    _, started = call(client, "POST", REDRIVE, body={})
    assert call(client, "GET", f"{REDRIVE}/{started['redrive_id']}", token="admin-b")[0] == 404
    assert call(client, "GET", f"{REDRIVE}/{started['redrive_id']}", token="operator")[0] == 200
    assert call(client, "GET", f"/v1/admin/queues/herald-local-low/redrive/{started['redrive_id']}")[0] == 404
    assert call(client, "GET", f"{REDRIVE}/rd_nope")[0] == 404


def test_the_work_survives_small_budgets_and_many_invocations(client, ops, monkeypatch):
    jobs = ops.kill("org-a", 25)
    ticks = iter(range(10**9))
    monkeypatch.setattr(ops.redrives, "_monotonic", lambda: next(ticks) * 0.25)  # every look at the clock: 0.25 s
    _, started = call(client, "POST", REDRIVE, body={})
    runs = ops.drain(budget_s=2.0)
    record = finished(client, ops, started)
    assert runs > 1 and record["status"] == "completed" and record["moved"] == 25
    assert ops.sent_counts(NORMAL) == Counter({j.job_id: 1 for j in jobs})
    assert ops.depth(NORMAL_DLQ).visible == 0 and ledger_ids(ops) == set()


def test_a_dead_letter_whose_message_is_gone_is_rebuilt_from_its_record(client, ops):
    jobs = ops.kill("org-a", 2)
    ops.take(NORMAL_DLQ)  # the DLQ lost its messages (retention, a purge); the ledger still lists them
    _, started = call(client, "POST", REDRIVE, body={})
    record = finished(client, ops, started)
    assert record["moved"] == 2 and ops.sent_counts(NORMAL) == Counter({j.job_id: 1 for j in jobs})


def test_a_job_reset_by_a_run_that_died_before_sending_is_sent_once(client, ops):
    stuck, fine = ops.kill("org-a", 2)
    ops.svc.store.requeue("org-a", stuck.job_id)  # reset, then the invocation died: message still in the DLQ
    _, started = call(client, "POST", REDRIVE, body={})
    assert finished(client, ops, started)["moved"] == 2
    assert ops.sent_counts(NORMAL) == Counter({stuck.job_id: 1, fine.job_id: 1})


def test_a_stale_copy_of_a_job_that_ran_since_is_dropped_not_sent(client, ops):
    done, dead = ops.kill("org-a", 2)
    ops.svc.store.requeue("org-a", done.job_id)
    ops.svc.queue.send(ops.svc.store.get("org-a", done.job_id))
    ops.work()  # it ran and completed; its old copy is still in the DLQ, its ledger entry too
    _, started = call(client, "POST", REDRIVE, body={})
    record = finished(client, ops, started)
    assert (record["moved"], record["skipped"]) == (1, 1)
    assert ops.sent_counts(NORMAL) == Counter({dead.job_id: 1}) and ops.depth(NORMAL_DLQ).visible == 0


def test_the_operators_whole_queue_redrive_resets_every_job_then_uses_the_sqs_move_task(client, ops):
    a = ops.kill("org-a", 3)
    b = ops.kill("org-b", 2)
    status, started = call(client, "POST", REDRIVE, token="operator", body={"max_per_second": 50})
    assert status == 202 and started["mode"] == "move_task" and started["to_move"] == 5
    record = finished(client, ops, started, token="operator")
    assert (record["status"], record["moved"], record["to_move"]) == ("completed", 5, 5)
    [task] = ops.sqs.started
    assert task["MaxNumberOfMessagesPerSecond"] == 50 and task["SourceArn"].endswith(NORMAL_DLQ)
    assert task["DestinationArn"].endswith(NORMAL)
    assert ledger_ids(ops) == set() and ops.depth(NORMAL_DLQ).visible == 0
    for job in a + b:
        assert ops.svc.store.get(job.org_id, job.job_id).status == "queued"
    ops.work()
    assert Counter(ops.delivered) == Counter(j.job_id for j in a + b)
    for job in a + b:
        assert ops.svc.store.get(job.org_id, job.job_id).attempts == 1


def test_a_whole_queue_redrive_puts_back_a_missing_message_before_the_move(client, ops):
    present, missing = ops.kill("org-a", 2)
    url = ops.svc.queue.url_of(NORMAL_DLQ)
    for m in ops.svc.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        if json.loads(m["Body"])["job_id"] == missing.job_id:
            ops.svc.sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        else:
            ops.svc.sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)
    _, started = call(client, "POST", REDRIVE, token="operator", body={})
    # The missing one's message is sent again to the source queue itself (the job was reset, so
    # it just runs); the move task carries the other.
    assert finished(client, ops, started, token="operator")["moved"] == 1
    assert ops.sent_counts(NORMAL) == Counter({present.job_id: 1, missing.job_id: 1})


def test_a_job_dying_again_during_the_move_keeps_its_dead_letter(client, ops):
    [job] = ops.kill("org-a", 1)
    original = ops.sqs.start_message_move_task

    def move_then_die_again(**request: Any) -> dict[str, Any]:
        answer = original(**request)
        ops.failures[job.job_id] = FatalError("http_500", "still down")  # the receiver still fails
        ops.work()  # redriven, runs, dies again: a new DLQ copy and ledger entry
        ops.take(NORMAL_DLQ)  # ... which a still-running move task carries out again and the worker drops
        return answer

    ops.sqs.start_message_move_task = move_then_die_again  # type: ignore[method-assign]
    _, started = call(client, "POST", REDRIVE, token="operator", body={})
    assert finished(client, ops, started, token="operator")["status"] == "completed"
    assert ops.svc.store.get("org-a", job.job_id).status == "dead"
    ops.work()  # its burial message, sent again, goes to the DLQ by the redrive policy
    assert ledger_ids(ops) == {job.job_id} and ops.depth(NORMAL_DLQ).visible == 1  # put back: consistent


def test_a_move_task_running_outside_herald_is_a_409(client, ops):
    ops.kill("org-a", 1)
    arn = ops.queue_ops.arn(NORMAL_DLQ)
    ops.sqs.tasks.append({"TaskHandle": "console", "SourceArn": arn, "Status": "RUNNING", "StartedTimestamp": 1})
    status, body = call(client, "POST", REDRIVE, token="operator", body={})
    assert status == 409 and body["error"]["code"] == "redrive_running"


def test_a_stalled_redrive_is_restarted_by_the_next_get(client, ops, monkeypatch):
    ops.kill("org-a", 1)
    _, started = call(client, "POST", REDRIVE, body={})
    ops.invocations.clear()  # the async invocation was lost
    store = RedriveStore(ops.svc.ddb, ops.svc.settings.table_name)
    assert store.set(started["redrive_id"], phase="reset")
    monkeypatch.setattr("chalicelib.ops.redrive.STALE_S", -10)
    assert call(client, "GET", f"{REDRIVE}/{started['redrive_id']}")[1]["status"] == "running"
    assert ops.invocations == [started["redrive_id"]]
    assert finished(client, ops, started)["status"] == "completed"


def test_a_redrive_whose_invocations_keep_failing_ends_failed_and_frees_the_queue(client, ops, monkeypatch):
    ops.kill("org-a", 1)

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("DynamoDB is down")

    monkeypatch.setattr(ops.svc.store, "requeue", broken)
    _, started = call(client, "POST", REDRIVE, body={})
    record = finished(client, ops, started)
    assert record["status"] == "failed" and record["error"]["code"] == "redrive_error"
    assert ops.depth(NORMAL_DLQ).visible == 1  # nothing lost
    assert call(client, "POST", REDRIVE, body={"dry_run": True})[1]["to_move"] == 1
    monkeypatch.undo()
    assert call(client, "POST", REDRIVE, body={})[0] == 202  # the lock was released


@pytest.mark.parametrize(
    ("body", "field"),
    [({"max_per_second": 501}, "max_per_second"), ({"dry_run": "yes"}, "dry_run"), ({"bogus": 1}, "bogus")],
)
def test_a_bad_redrive_request_is_a_400_that_changes_nothing(client, ops, body, field):
    ops.kill("org-a", 1)
    status, answer = call(client, "POST", REDRIVE, body=body)
    assert status == 400 and answer["error"]["details"][0]["field"] == field
    assert ops.invocations == [] and ops.depth(NORMAL_DLQ).visible == 1


def test_an_invocation_that_lost_its_lease_stops_and_leaves_the_rest_to_the_new_owner(client, ops, monkeypatch):
    jobs = ops.kill("org-a", 40)
    _, started = call(client, "POST", REDRIVE, body={})
    store = ops.redrives.store
    beats = iter([True, False])  # the first heartbeat renews; then another invocation has it
    monkeypatch.setattr(store, "beat", lambda *args: next(beats, False))
    monkeypatch.setattr("chalicelib.ops.redrive.HEARTBEAT_S", 0.0)
    assert ops.redrives.run(ops.invocations.pop(0), 60.0) is True  # stopped, did not re-invoke itself
    assert ops.invocations == []
    monkeypatch.undo()
    ops.invocations.append(started["redrive_id"])  # the new owner's invocation
    record = finished(client, ops, started)
    assert record["status"] == "completed"
    assert ops.sent_counts(NORMAL) == Counter({j.job_id: 1 for j in jobs})


def test_the_rate_limiter_spaces_calls_across_threads():
    from concurrent.futures import ThreadPoolExecutor

    from chalicelib.ops.redrive import RateLimiter

    sleeps: list[float] = []
    limiter = RateLimiter(10, lambda: 100.0, sleeps.append)  # a clock that stands still
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda _: limiter.wait(), range(5)))
    assert sorted(round(s, 3) for s in sleeps) == [0.1, 0.2, 0.3, 0.4]  # the first goes at once
