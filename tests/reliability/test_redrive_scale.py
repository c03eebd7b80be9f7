"""Redrive at scale: N dead letters (500; 5,000 with HERALD_SOAK=1) redriven while new jobs flow.

A throwaway organization's N webhook jobs are made dead the way the worker kills a job
(`Jobs.make_dead`: record `dead`, envelope in the `normal` queue's DLQ, ledger entry; a fatal
`http_422`), from the test process, many at a time: the workers' own dying path is exercised by
the fault run and the integration tests, and at this size it would take minutes. Then the
organization's admin redrives its dead letters through the API (`POST
/v1/admin/queues/normal/redrive`, followed with `GET .../redrive/{id}`) while new jobs are posted.
Afterwards every job is completed, ran from attempt 1 again, and got exactly one 2xx at the
receiver; the ledger holds nothing of the organization any more.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest

from chalicelib.jobs.model import Job
from tests.reliability.harness import (
    Attempts,
    CountingReceiver,
    Jobs,
    Tenant,
    post_jobs,
    size,
    webhook_body,
)
from tests.reliability.report import ReliabilityReport
from tests.support.api import Api, wait_for

pytestmark = pytest.mark.reliability

DEAD = size(500, 5_000)
FLOWING = size(200, 2_000)
PRIORITY = "normal"
QUEUE = f"/v1/admin/queues/{PRIORITY}"
DEADLINE_S = size(420, 3_000)


def dry_run(admin: Api) -> int:
    reply = admin.post(f"{QUEUE}/redrive", {"dry_run": True})
    assert reply.status == 200, reply
    return int(reply.body["to_move"])


def start_redrive(admin: Api, deadline: float) -> dict[str, Any]:
    """Start the organization's redrive; another one holding the queue's lock (409) is waited out."""

    def started() -> dict[str, Any] | None:
        reply = admin.post(f"{QUEUE}/redrive", {})
        if reply.status == 409:
            return None
        assert reply.status == 202, reply
        return dict(reply.body)

    return wait_for(started, max(deadline - time.monotonic(), 1), "the queue's redrive lock", interval=2)


@dataclass
class RedriveRun:
    """The whole scenario, run in a background thread from the kick-off (so it overlaps the other
    tests, the API fuzzing above all); the verdict test waits for it and judges."""

    tenant: Tenant
    jobs: Jobs
    receiver: CountingReceiver
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    started: float = field(default_factory=time.monotonic)
    dead_ids: list[str] = field(default_factory=list)
    new_ids: list[str] = field(default_factory=list)
    progress: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    records: dict[str, Job | None] = field(default_factory=dict)
    error: BaseException | None = None
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run_safely, name="redrive-run", daemon=True)
        self.thread.start()

    def join(self) -> None:
        assert self.thread is not None
        self.thread.join(max(self.started + DEADLINE_S + 60 - time.monotonic(), 1))
        assert not self.thread.is_alive(), "the redrive run did not finish by its deadline"
        if self.error is not None:
            raise self.error

    def _run_safely(self) -> None:
        try:
            self.run()
        except BaseException as err:  # handed to the verdict test
            self.error = err

    def run(self) -> None:
        tenant, jobs, receiver = self.tenant, self.jobs, self.receiver
        deadline = self.started + DEADLINE_S
        # 1. N dead letters, as the worker leaves them.
        doomed = [
            jobs.new(
                tenant.org_id,
                "webhook",
                {"url": receiver.url, "body": {"run": self.run_id, "dead": i}},
                priority=PRIORITY,
            )
            for i in range(DEAD)
        ]
        error = {"code": "http_422", "message": "The webhook endpoint answered HTTP 422.", "retryable": False}
        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(lambda job: jobs.make_dead(job, error), doomed))
        self.dead_ids = [job.job_id for job in doomed]
        statuses = jobs.statuses(tenant.org_id, self.dead_ids)
        assert all(statuses.get(job_id) == "dead" for job_id in self.dead_ids), "not every doomed job died"
        assert dry_run(tenant.admin) == DEAD  # the API sees them all
        self.timings["made"] = time.monotonic() - self.started

        # 2. The redrive runs while new jobs are posted.
        redrive = start_redrive(tenant.admin, deadline)
        redrive_started = time.monotonic()
        assert redrive["to_move"] == DEAD, redrive
        bodies = [
            webhook_body(receiver, {"run": self.run_id, "new": i}, priority=PRIORITY, key=f"rd-{self.run_id}-{i}")
            for i in range(FLOWING)
        ]
        with ThreadPoolExecutor(max_workers=1) as pool:
            flow = pool.submit(post_jobs, tenant.member, bodies, deadline, Attempts())
            self.progress = wait_for(
                lambda: finished(tenant.admin, redrive["redrive_id"]),
                max(deadline - time.monotonic(), 1),
                "the redrive to finish",
                interval=1,
            )
            self.new_ids = [reply.body["job_id"] for reply in flow.result()]
        self.timings["redrive"] = time.monotonic() - redrive_started

        # 3. Everything completes.
        ids = self.dead_ids + self.new_ids
        jobs.wait_final(tenant.org_id, ids, deadline)
        self.records = jobs.records(tenant.org_id, ids)
        self.timings["all"] = time.monotonic() - self.started


@pytest.fixture(scope="session")
def redrive_run(tenants: Callable[[str], Tenant], jobs: Jobs) -> Iterator[RedriveRun]:
    receiver = CountingReceiver()
    receiver.start()
    run = RedriveRun(tenants("rel-redrive"), jobs, receiver)
    try:
        yield run
    finally:
        if run.thread is not None:
            run.thread.join(max(run.started + DEADLINE_S + 60 - time.monotonic(), 0))
        receiver.stop()


@pytest.mark.kickoff
def test_the_redrive_run_starts_in_the_background(redrive_run: RedriveRun) -> None:
    redrive_run.start()
    assert redrive_run.thread is not None and redrive_run.thread.is_alive()


@pytest.mark.verdict
def test_dead_letters_redriven_while_new_jobs_flow_all_complete_once(
    redrive_run: RedriveRun, reliability_report: ReliabilityReport
) -> None:
    run = redrive_run
    if run.thread is None:  # run on its own (-k): start it here
        run.start()
    run.join()
    records, successes = run.records, run.receiver.successes()
    ids = run.dead_ids + run.new_ids
    completed = [job_id for job_id, job in records.items() if job is not None and job.status == "completed"]
    dead = [job_id for job_id, job in records.items() if job is not None and job.status == "dead"]
    lost = [job_id for job_id in ids if job_id not in completed and job_id not in dead]
    duplicated = {job_id: n for job_id, n in successes.items() if n > 1}
    reran = [job_id for job_id in run.dead_ids if (job := records[job_id]) is not None and job.attempts == 1]
    leftover = run.tenant.admin.get(f"{QUEUE}/dead-letters?limit=100").body["items"]
    reliability_report.record(
        "redrive at scale",
        jobs_injected=len(ids),
        faults_injected=DEAD,
        completed=len(completed),
        dead_with_reason=sum(1 for job_id in dead if (records[job_id].error or {}).get("code")),  # type: ignore[union-attr]
        lost=len(lost),
        duplicated_effects=sum(n - 1 for n in duplicated.values()),
        note=f"{DEAD} dead letters (made in {run.timings['made']:.0f} s) redriven in {run.timings['redrive']:.0f} s "
        f"(status {run.progress['status']}, moved {run.progress['moved']}) while {FLOWING} new jobs were posted; "
        f"all done {run.timings['all']:.0f} s after the start",
    )
    assert run.progress["status"] == "completed" and run.progress["moved"] == DEAD, run.progress
    assert not lost, f"{len(lost)} jobs not final: {lost[:10]}"
    assert not dead, f"{len(dead)} jobs dead after the redrive: {dead[:10]}"
    assert not duplicated, f"delivered more than once: {list(duplicated.items())[:10]}"
    assert all(successes.get(job_id) == 1 for job_id in ids)
    assert len(reran) == DEAD, "a redriven job did not run again from attempt 1"
    assert leftover == [], leftover


def finished(admin: Api, redrive_id: str) -> dict[str, Any] | None:
    reply = admin.get(f"{QUEUE}/redrive/{redrive_id}")
    assert reply.status == 200, reply
    return dict(reply.body) if reply.body["status"] != "running" else None
