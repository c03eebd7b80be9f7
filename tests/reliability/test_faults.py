"""Faults while jobs flow: nothing lost, no webhook delivered twice (counted at the receiver).

One fault run for the whole session, in a throwaway organization (`fault_run`):
N webhook jobs (200; 2,000 with HERALD_SOAK=1) are posted through the API on the `high` queue
while these faults are injected:
  (a) a worker times out mid-batch: a `chaos` job (the local stage's fault-injection type,
      chalicelib/handlers/chaos.py) that sleeps past the function timeout, sent in ONE
      SendMessageBatch among webhook jobs on the `low` queue (its own queue: the sleep holds the
      queue's poller for the 30 s timeout, and the flaky receiver must meet the flow meanwhile);
  (b) the receiver answers 500 to half of the requests for a while, then 200s; and the first
      delivery of a few jobs (on `critical`: a slow answer holds its queue's poller for the
      worker's read timeout) is answered too late: a timeout to the sender;
  (c) DynamoDB Local is stopped and started again (data kept), while the flow is still posting,
      and at the worst moment for one job: the receiver stops it after the job's webhook arrived
      and before answering 200, so the worker cannot record the effect it just had;
  (d) a worker exits with sys.exit mid-batch (`chaos` exit among webhook jobs on `high`).
A job whose worker died comes back after the queue's visibility timeout (180 s locally) and its
lease; so the kick-off test only injects (about 40 s), and the verdicts (marked `verdict`)
run at the end of the session, by when the recovery has overlapped the other reliability tests.

Verdicts: every job is completed, or dead with a reason; none missing; every completed webhook
job got exactly one 2xx answer at the receiver (retries after a 500 or a timeout are
legitimate re-deliveries, a second 2xx is not), a dead one none.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest

from chalicelib.jobs.model import Job
from tests.contract.webhook_receiver import Reply
from tests.reliability.harness import (
    FINAL,
    OK,
    SOAK,
    Attempts,
    CountingReceiver,
    DynamoRestart,
    Flaky,
    Jobs,
    Outage,
    Tenant,
    post_jobs,
    size,
    webhook_body,
)
from tests.reliability.report import ReliabilityReport

pytestmark = pytest.mark.reliability

FLOW_JOBS = size(200, 2_000)
BATCH = 10  # the workers' SQS batch size
CHAOS_AT = 6  # the chaos job's place in its batch: the jobs before it ran in the same invocation
# Faults come in cycles (1; 3 with HERALD_SOAK=1), each driven by what the stack has done, not by
# the clock (this machine's pace varies a lot): a timed-out batch and slow-answered jobs; once
# deliveries flow, the receiver's outage; then two crashed batches; once every chaos job has had
# its first attempt, DynamoDB goes away (a worker that cannot read the table fails its whole
# batch, which comes back only after the visibility timeout: the crashes must come first).
CYCLES = size(1, 3)
FLOW_S = 30.0  # the API flow is spread over this (the API's own pace makes the soak's longer)
OUTAGE_POSTS = 20  # per cycle, of FLOW_JOBS: posted as DynamoDB goes away (503s, then accepted)
FLAKY_MIN_S, FLAKY_MAX_S, FLAKY_ANSWERS = 8.0, 30.0, 40
SLOW_JOBS = 2  # per cycle, on `critical`: a slow answer holds its queue's poller for the read timeout
DYNAMODB_COHORT = 20  # jobs sent as DynamoDB goes away, so workers are busy with them
STEP_WAIT_S = 120.0  # each event awaited (deliveries flowing, chaos started, the trigger delivered)
# The run must be over by then: the last fault, the visibility timeout (180 s), lease, retries.
SETTLE_S = 1_200.0 if SOAK else 540.0


@dataclass
class FaultRun:
    tenant: Tenant
    jobs: Jobs
    receiver: CountingReceiver
    flaky: Flaky
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    started: float = field(default_factory=time.monotonic)
    flow_ids: list[str] = field(default_factory=list)
    flow_keys: list[str] = field(default_factory=list)
    cohorts: dict[str, list[str]] = field(default_factory=lambda: {"timeout": [], "crash": [], "dynamodb": []})
    chaos: dict[str, list[str]] = field(default_factory=lambda: {"sleep": [], "exit": []})
    outages: list[Outage] = field(default_factory=list)
    slow_ids: list[str] = field(default_factory=list)  # their first delivery times out
    slow_pending: set[str] = field(default_factory=set)
    triggers: dict[str, DynamoRestart] = field(default_factory=dict)  # job id -> its restart
    fired: list[str] = field(default_factory=list)  # triggers whose delivery stopped DynamoDB
    api: Attempts = field(default_factory=Attempts)
    outage_bodies: list[dict[str, Any]] = field(default_factory=list)
    outage_ids: list[str] = field(default_factory=list)
    faults: Counter[str] = field(default_factory=Counter)
    _settled: dict[str, Job | None] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def org(self) -> str:
        return self.tenant.org_id

    @property
    def webhook_ids(self) -> list[str]:
        return self.flow_ids + self.slow_ids + [job_id for ids in self.cohorts.values() for job_id in ids]

    @property
    def all_ids(self) -> list[str]:
        return self.webhook_ids + self.chaos["sleep"] + self.chaos["exit"]

    # --- injection ---------------------------------------------------------------------------

    def webhook(self, priority: str, tag: str, i: int) -> Job:
        return self.jobs.new(
            self.org, "webhook", {"url": self.receiver.url, "body": {"run": self.run_id, tag: i}}, priority=priority
        )

    def chaos_batch(self, action: str, priority: str) -> None:
        """One SendMessageBatch: webhook jobs with a chaos job at CHAOS_AT."""
        cohort = "timeout" if action == "sleep" else "crash"
        mates = [self.webhook(priority, cohort, len(self.cohorts[cohort]) + i) for i in range(BATCH - 1)]
        chaos = self.jobs.new(self.org, "chaos", {"action": action, "fail_attempts": 1}, priority=priority)
        self.jobs.send_batch(priority, [*mates[:CHAOS_AT], chaos, *mates[CHAOS_AT:]])
        self.cohorts[cohort] += [job.job_id for job in mates]
        self.chaos[action].append(chaos.job_id)
        self.faults["worker timeout (chaos sleep)" if action == "sleep" else "worker crash (sys.exit)"] += 1

    def slow_jobs(self) -> None:
        slow = [self.webhook("critical", "slow", len(self.slow_ids) + i) for i in range(SLOW_JOBS)]
        self.slow_pending.update(job.job_id for job in slow)
        self.slow_ids += [job.job_id for job in slow]
        self.jobs.send_batch("critical", slow)

    def receiver_outage(self) -> None:
        """Once deliveries flow: 500s to half of the requests, for long enough to meet many jobs."""
        await_(lambda: len(self.receiver.answers()) >= 5, "deliveries to flow")
        started = self.flaky.start()
        while time.monotonic() < started + FLAKY_MAX_S:
            served = self.flaky.served["500"] + self.flaky.served["200"]
            if served >= FLAKY_ANSWERS and time.monotonic() >= started + FLAKY_MIN_S:
                break
            time.sleep(0.5)
        self.flaky.stop()
        self.faults["webhook target 500s/timeouts"] += 1

    def chaos_started(self) -> None:
        """Every chaos job has had its first attempt (its worker is dying or dead)."""
        ids = self.chaos["sleep"] + self.chaos["exit"]

        def started() -> bool:
            records = self.jobs.records(self.org, ids)
            return all(job is not None and job.attempts >= 1 for job in records.values())

        await_(started, "every chaos job to start")

    def policy(self, webhook_id: str) -> Reply:
        """The receiver: a trigger job's first delivery stops DynamoDB before it is answered 200
        (the worker then cannot record the effect); everything else follows the flaky policy."""
        restart = self.triggers.get(webhook_id)
        if restart is not None and not restart.done.is_set() and webhook_id not in self.fired:
            self.fired.append(webhook_id)
            restart.stop_then_restart()
            return OK
        if webhook_id in self.slow_pending:
            self.slow_pending.discard(webhook_id)
            self.flaky.note("slow")
            return Reply(503, {"Content-Type": "text/plain"}, b"too slow", delay=self.flaky.slow_s)
        return self.flaky(webhook_id)

    def dynamodb_restart(self) -> None:
        # On `normal`, idle meanwhile: the trigger is delivered at once.
        batch = [self.webhook("normal", "dynamodb", len(self.cohorts["dynamodb"]) + i) for i in range(DYNAMODB_COHORT)]
        trigger = self.webhook("normal", "dynamodb", -len(self.triggers) - 1)
        restart = self.triggers[trigger.job_id] = DynamoRestart()
        self.jobs.send_batch("normal", [trigger, *batch])
        self.cohorts["dynamodb"] += [trigger.job_id, *(job.job_id for job in batch)]
        if not restart.down.wait(STEP_WAIT_S) and trigger.job_id not in self.fired:
            self.fired.append("(timer)")  # the trigger was not delivered in time: stop it anyway
            threading.Thread(target=restart.run, daemon=True).start()
            restart.down.wait(30)
        # API calls while the table is away: answered 503 until it is back, then accepted.
        start = len(self.outage_bodies)
        self.outage_bodies += [
            webhook_body(
                self.receiver,
                {"run": self.run_id, "outage": start + i},
                priority="high",
                key=f"rel-{self.run_id}-outage-{start + i}",
            )
            for i in range(OUTAGE_POSTS)
        ]
        replies = post_jobs(self.tenant.member, self.outage_bodies[start:], self.started + SETTLE_S / 2, self.api)
        self.outage_ids += [reply.body["job_id"] for reply in replies]
        self.outages.append(restart.wait())
        self.faults["DynamoDB stopped and restarted"] += 1

    def inject(self) -> None:
        """Post the flow through the API and inject every fault; returns when the flow is all
        accepted and DynamoDB is back (the recovery goes on by itself)."""
        self.receiver.policy = self.policy
        flow = FLOW_JOBS - OUTAGE_POSTS * CYCLES
        self.flow_keys = [f"rel-{self.run_id}-{i}" for i in range(flow)]
        bodies = [
            webhook_body(self.receiver, {"run": self.run_id, "flow": i}, priority="high", key=key)
            for i, key in enumerate(self.flow_keys)
        ]
        with ThreadPoolExecutor(max_workers=1) as pool:
            posting: Future[Any] = pool.submit(
                post_jobs, self.tenant.member, bodies, self.started + SETTLE_S / 2, self.api, spread_s=FLOW_S
            )
            for _ in range(CYCLES):
                self.chaos_batch("sleep", "low")
                self.slow_jobs()
                self.receiver_outage()
                self.chaos_batch("exit", "high")
                self.chaos_batch("exit", "high")
                self.chaos_started()
                self.dynamodb_restart()
            replies = posting.result()
        self.flow_ids = [reply.body["job_id"] for reply in replies] + self.outage_ids

    # --- the outcome ------------------------------------------------------------------------

    def settle(self) -> dict[str, Job | None]:
        """Wait (once) until every job of the run is final or the deadline; their records."""
        with self._lock:
            if self._settled is None:
                ids = self.all_ids
                self.jobs.wait_final(self.org, ids, self.started + SETTLE_S)
                self._settled = self.jobs.records(self.org, ids)
            return self._settled

    def verdict(self, ids: list[str]) -> dict[str, Any]:
        """For these jobs: final statuses, lost ones, deliveries per completed/dead webhook job."""
        records = self.settle()
        successes = self.receiver.successes()
        webhooks = set(self.webhook_ids)
        out: dict[str, Any] = {
            "completed": [],
            "dead": [],
            "dead_without_reason": [],
            "lost": [],
            "duplicated": {},
            "undelivered": [],
            "delivered_but_dead": [],
        }
        for job_id in ids:
            job = records.get(job_id)
            if job is None or job.status not in FINAL:
                out["lost"].append((job_id, None if job is None else job.status))
                continue
            if job.status == "dead":
                out["dead"].append(job_id)
                if not (job.error or {}).get("code"):
                    out["dead_without_reason"].append(job_id)
            elif job.status == "completed":
                out["completed"].append(job_id)
            if job_id not in webhooks:
                continue
            got = successes.get(job_id, 0)
            if job.status == "completed" and got == 0:
                out["undelivered"].append(job_id)
            if got > 1:
                out["duplicated"][job_id] = got
            if job.status == "dead" and got:
                out["delivered_but_dead"].append(job_id)
        return out


def await_(probe: Callable[[], bool], what: str, timeout: float = STEP_WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(0.5)


def assert_effectively_once(verdict: dict[str, Any], what: str) -> None:
    assert not verdict["lost"], f"{what}: jobs not final (lost): {verdict['lost'][:20]}"
    assert not verdict["dead_without_reason"], f"{what}: dead without a reason: {verdict['dead_without_reason']}"
    assert not verdict["duplicated"], (
        f"{what}: webhooks delivered more than once (2xx answers): {verdict['duplicated']}"
    )
    assert not verdict["undelivered"], f"{what}: completed but never answered 2xx: {verdict['undelivered'][:20]}"
    assert not verdict["delivered_but_dead"], f"{what}: answered 2xx but dead: {verdict['delivered_but_dead']}"


@pytest.fixture(scope="session")
def fault_run(tenants: Callable[[str], Tenant], jobs: Jobs) -> Iterator[FaultRun]:
    receiver = CountingReceiver()
    receiver.start()
    run = FaultRun(tenants("rel-faults"), jobs, receiver, Flaky(FLAKY_MAX_S))
    try:
        run.inject()
        yield run
    finally:
        receiver.stop()


# --- kick-off (runs first) -------------------------------------------------------------------


@pytest.mark.kickoff
def test_faults_are_injected_while_jobs_flow(fault_run: FaultRun) -> None:
    run = fault_run
    assert len(run.flow_ids) == FLOW_JOBS
    assert len(set(run.flow_ids)) == FLOW_JOBS, "a retried POST with the same idempotency key made a second job"
    assert run.flaky.served["500"] > 0 and run.flaky.served["slow"] > 0, run.flaky.served
    assert run.api.server_errors > 0, "no API call met the DynamoDB outage"
    for outage in run.outages:
        assert outage.seen_down and outage.pid_after != outage.pid_before, outage
    assert len(run.chaos["sleep"]) == CYCLES and len(run.chaos["exit"]) == 2 * CYCLES


# --- verdicts (run last: by then the recovery has happened) ----------------------------------


@pytest.mark.verdict
def test_after_the_faults_every_job_is_completed_or_dead_with_a_reason_and_none_is_lost(
    fault_run: FaultRun, reliability_report: ReliabilityReport
) -> None:
    run = fault_run
    verdict = run.verdict(run.all_ids)
    duplicated = sum(n - 1 for n in verdict["duplicated"].values())
    reliability_report.record(
        "faults (a-d)",
        jobs_injected=len(run.all_ids),
        faults_injected=sum(run.faults.values()),
        completed=len(verdict["completed"]),
        dead_with_reason=len(verdict["dead"]) - len(verdict["dead_without_reason"]),
        lost=len(verdict["lost"]) + len(verdict["dead_without_reason"]),
        duplicated_effects=duplicated,
        note=", ".join(f"{name}: {n}" for name, n in run.faults.items()),
    )
    seen = run.receiver.answers()
    reliability_report.note(
        "faults (a-d)",
        f"receiver answers: {len(seen)} ({sum(1 for _, s, _ in seen if 200 <= s < 300)} 2xx); "
        f"flaky phase served {dict(run.flaky.served)}; "
        f"DynamoDB outages: {', '.join(f'{o.seconds:.1f} s' for o in run.outages)}; API answers while posting: "
        f"{dict(sorted(run.api.statuses.items()))}, network errors {run.api.errors}",
    )
    assert not verdict["lost"], f"jobs not final (lost): {verdict['lost'][:20]}"
    assert not verdict["dead_without_reason"], verdict["dead_without_reason"]


@pytest.mark.verdict
def test_after_the_faults_no_webhook_was_delivered_twice(fault_run: FaultRun) -> None:
    assert_effectively_once(fault_run.verdict(fault_run.webhook_ids), "all webhook jobs")


@pytest.mark.verdict
def test_a_worker_timing_out_mid_batch_loses_nothing_and_repeats_no_effect(
    fault_run: FaultRun, reliability_report: ReliabilityReport
) -> None:
    run = fault_run
    records = run.settle()
    for job_id in run.chaos["sleep"]:
        job = records[job_id]
        # The first attempt was killed by the function timeout; the message came back and ran.
        assert job is not None and job.status == "completed" and job.attempts >= 2, job
    verdict = run.verdict(run.cohorts["timeout"])
    reliability_report.note("faults (a-d)", _cohort_line("(a) worker timeout mid-batch", verdict))
    assert_effectively_once(verdict, "the timed-out batches")


@pytest.mark.verdict
def test_a_failing_then_recovering_webhook_target_gets_each_effect_once(
    fault_run: FaultRun, reliability_report: ReliabilityReport
) -> None:
    run = fault_run
    run.settle()
    refused = set(run.receiver.failures())  # every job the outage met: a 500 or a slow answer
    cohort = [job_id for job_id in run.webhook_ids if job_id in refused]
    assert cohort, "the receiver's outage met no job"
    verdict = run.verdict(cohort)
    reliability_report.note("faults (a-d)", _cohort_line("(b) target 500s/timeouts", verdict))
    assert_effectively_once(verdict, "jobs the receiver's outage met")
    for job_id in verdict["dead"]:
        code = (run.settle()[job_id].error or {}).get("code", "")  # type: ignore[union-attr]
        assert code in ("http_500", "http_503", "timeout"), code


@pytest.mark.verdict
def test_a_dynamodb_restart_loses_nothing_and_repeats_no_effect(
    fault_run: FaultRun, reliability_report: ReliabilityReport
) -> None:
    run = fault_run
    records = run.settle()
    windows = [(o.stopped_at - 5, o.back_at + 5) for o in run.outages]
    around = [
        job_id
        for job_id in run.flow_ids
        if (job := records.get(job_id)) is not None and any(iso_between(job, start, end) for start, end in windows)
    ]
    verdict = run.verdict(run.cohorts["dynamodb"] + around)
    reliability_report.note("faults (a-d)", _cohort_line("(c) DynamoDB restart", verdict))
    assert_effectively_once(verdict, "jobs in flight around the DynamoDB restart")
    # DynamoDB went away between a trigger job's effect (its webhook arrived) and the worker's
    # record of it: still completed, and delivered once.
    assert set(run.fired) == set(run.triggers), f"not every restart was triggered by a delivery: {run.fired}"
    for job_id in run.triggers:
        job = records[job_id]
        assert job is not None and job.status == "completed", job
        assert run.receiver.successes()[job_id] == 1, f"the trigger job {job_id} was delivered again"
    # Every POST was eventually accepted, each idempotency key made exactly one job.
    assert len(set(run.flow_ids)) == FLOW_JOBS


@pytest.mark.verdict
def test_a_worker_crashing_with_sys_exit_mid_batch_loses_nothing_and_repeats_no_effect(
    fault_run: FaultRun, reliability_report: ReliabilityReport
) -> None:
    run = fault_run
    records = run.settle()
    for job_id in run.chaos["exit"]:
        job = records[job_id]
        assert job is not None and job.status == "completed" and job.attempts >= 2, job
    verdict = run.verdict(run.cohorts["crash"])
    reliability_report.note("faults (a-d)", _cohort_line("(d) worker sys.exit mid-batch", verdict))
    assert_effectively_once(verdict, "the crashed batches")


def iso_between(job: Job, start: float, end: float) -> bool:
    created = job.created_at.timestamp()
    return start <= created <= end


def _cohort_line(name: str, verdict: dict[str, Any]) -> str:
    return (
        f"{name}: {len(verdict['completed']) + len(verdict['dead']) + len(verdict['lost'])} jobs, "
        f"{len(verdict['completed'])} completed, {len(verdict['dead'])} dead, {len(verdict['lost'])} lost, "
        f"{sum(n - 1 for n in verdict['duplicated'].values())} duplicated"
    )
