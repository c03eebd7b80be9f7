"""What the reliability tests share: sizes, throwaway tenants, a counting webhook receiver, the
job core driven from the test process, the DynamoDB Local restart, and polling with deadlines.

Everything acts on the deployed local stack (LocalStack + DynamoDB Local). Tests create their
own organizations (tokens seeded hashed, removed afterwards), so what they enqueue, kill or
redrive belongs to nobody else sharing the stack.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chalicelib.auth import Principal, TokenStore, hash_token, new_token
from chalicelib.clock import utcnow
from chalicelib.config import Settings
from chalicelib.ddb import to_item
from chalicelib.jobs.burial import new_burial
from chalicelib.jobs.ledger import DeadLetterLedger
from chalicelib.jobs.model import Job, new_job_id
from chalicelib.jobs.queue import JobQueue
from chalicelib.jobs.service import JobService, NewJob
from chalicelib.jobs.store import JobStore
from chalicelib.orgs import OrgStore
from tests.contract.webhook_receiver import Reply, WebhookReceiver
from tests.support.api import Api
from tests.support.api import Reply as ApiReply
from tests.support.cloud import DYNAMODB, ROOT, LocalCloud

SOAK = os.environ.get("HERALD_SOAK") == "1"
SETTINGS = Settings.from_env({"HERALD_STAGE": "local"})
TABLE = SETTINGS.table_name
FINAL = frozenset({"completed", "dead", "cancelled"})
OK = Reply(200, {"Content-Type": "application/json"}, b'{"ok":true}')


def size(make_test: int, soak: int) -> int:
    return soak if SOAK else make_test


# --- tenants ----------------------------------------------------------------------------------


@dataclass
class Tenant:
    """A throwaway organization with a member and an admin token (hashed in the table)."""

    org_id: str
    member_token: str
    admin_token: str
    member: Api
    admin: Api


def seed_tenant(stack: dict[str, Any], cloud: LocalCloud, prefix: str) -> Tenant:
    org_id = f"{prefix}-{uuid.uuid4().hex[:8]}"
    ddb = cloud.client("dynamodb")
    tokens = TokenStore(ddb, TABLE)
    member, admin = new_token(), new_token()
    tokens.put(member, Principal("member", org_id), name=f"{org_id} reliability member")
    tokens.put(admin, Principal("admin", org_id), name=f"{org_id} reliability admin")
    OrgStore(ddb, TABLE).put_org(org_id, org_id.upper())
    api = Api(stack["api_url"])
    return Tenant(org_id, member, admin, api.as_(member), api.as_(admin))


def remove_tenant(cloud: LocalCloud, tenant: Tenant) -> None:
    ddb = cloud.client("dynamodb")
    keys = [{"pk": f"TOKEN#{hash_token(t)}", "sk": "TOKEN"} for t in (tenant.member_token, tenant.admin_token)]
    keys += [{"pk": f"ORG#{tenant.org_id}", "sk": "ORG"}, {"pk": "ORGS", "sk": f"ORG#{tenant.org_id}"}]
    for key in keys:
        ddb.delete_item(TableName=TABLE, Key=to_item(key))


# --- the webhook receiver -------------------------------------------------------------------


class CountingReceiver(WebhookReceiver):
    """A webhook endpoint whose answers follow `policy(webhook_id) -> Reply` (OK by default) and
    which remembers every answer by webhook-id: `successes()` counts the 2xx answers per id, what
    "delivered" means to a receiver. It listens on all interfaces' loopback, as the local
    Lambdas (processes on this machine) reach it."""

    def __init__(self, policy: Callable[[str], Reply] | None = None) -> None:
        super().__init__()
        self.policy = policy
        self._answers: list[tuple[str, int, float]] = []

    def _record_and_next(self, handler: Any, body: bytes) -> Reply:
        super()._record_and_next(handler, body)
        webhook_id = handler.headers.get("webhook-id") or ""
        policy = self.policy
        reply = policy(webhook_id) if policy is not None else OK
        with self._lock:
            self._answers.append((webhook_id, reply.status, time.time()))
        return reply

    def answers(self) -> list[tuple[str, int, float]]:
        with self._lock:
            return list(self._answers)

    def requests_for(self, webhook_id: str) -> list[Any]:
        return [r for r in self.requests if r.headers.get("webhook-id") == webhook_id]

    def successes(self) -> Counter[str]:
        return Counter(wid for wid, status, _ in self.answers() if 200 <= status < 300)

    def failures(self) -> Counter[str]:
        return Counter(wid for wid, status, _ in self.answers() if not 200 <= status < 300)


class Flaky:
    """A receiver policy for an outage of the target: for `seconds` after `start()`, a share
    `p500` of the requests get a 500; afterwards all is 200. Slow answers (a 503 after `slow_s`,
    longer than the worker's read timeout: a timeout to the sender, and no effect at the
    receiver) are not this policy's: the caller gives them and counts them here with `note()`.
    (A slow answer holds its queue's poller for the read timeout, so there are few of them.)"""

    def __init__(self, seconds: float, p500: float = 0.5, slow_s: float = 11.0) -> None:
        self.seconds, self.p500, self.slow_s = seconds, p500, slow_s
        self.until = 0.0
        self._rng = random.Random(9)
        self._lock = threading.Lock()  # guards `_rng` and `served` (requests come on many threads)
        self.served = Counter[str]()

    def start(self) -> float:
        """Start the outage (for `seconds`, or until `stop()`); returns when it started."""
        now = time.monotonic()
        self.until = now + self.seconds
        return now

    def stop(self) -> None:
        self.until = 0.0

    def note(self, kind: str) -> None:
        """Count an answer another policy gave during the outage (e.g. a slow one)."""
        with self._lock:
            self.served[kind] += 1

    @property
    def active(self) -> bool:
        return time.monotonic() < self.until

    def __call__(self, webhook_id: str) -> Reply:
        if not self.active:
            return OK
        with self._lock:
            kind = "500" if self._rng.random() < self.p500 else "200"
            self.served[kind] += 1
        if kind == "500":
            return Reply(500, {"Content-Type": "text/plain"}, b"target down")
        return OK


# --- the job core, driven from the test process ---------------------------------------------


class Jobs:
    """Herald's own JobStore / JobQueue / JobService against the local cloud, for what a test
    must do below the API: fault-injection jobs, interleaved batches, poison messages."""

    def __init__(self, cloud: LocalCloud) -> None:
        self.ddb = cloud.client("dynamodb")
        self.sqs = cloud.client("sqs")
        self.store = JobStore(self.ddb, TABLE)
        self.queue = JobQueue(self.sqs, SETTINGS)
        self.service = JobService(self.store, self.queue)
        self.ledger = DeadLetterLedger(self.ddb, TABLE)

    def new(
        self,
        org_id: str,
        job_type: str,
        payload: dict[str, Any],
        *,
        priority: str = "normal",
        max_attempts: int = 10,
        backoff_seconds: int = 1,
    ) -> Job:
        now = utcnow()
        return Job(
            job_id=new_job_id(),
            org_id=org_id,
            type=job_type,
            status="queued",
            priority=priority,
            created_at=now,
            run_at=now,
            payload=payload,
            max_attempts=max_attempts,
            backoff_seconds=backoff_seconds,
            correlation_id=uuid.uuid4().hex,
        )

    def enqueue(self, org_id: str, job_type: str, payload: dict[str, Any], **kw: Any) -> Job:
        job, _ = self.service.enqueue(NewJob(org_id=org_id, type=job_type, payload=payload, **kw))
        return job

    def send_batch(self, priority: str, items: Sequence[Job | str]) -> list[Job]:
        """Write the records of the jobs among `items`, then send every item in ONE
        SendMessageBatch (a job as its envelope, a str as a raw message body), in order, so
        the worker is likely to get them in one batch. Returns the jobs."""
        jobs = [item for item in items if isinstance(item, Job)]
        for job in jobs:
            self.store.create(job)
        entries = []
        for i, item in enumerate(items):
            if isinstance(item, Job):
                entries.append(self.queue.batch_entry(item, str(i)))
            else:
                entries.append({"Id": str(i), "MessageBody": item})
        for start in range(0, len(entries), 10):
            response = self.sqs.send_message_batch(
                QueueUrl=self.queue.queue_url(priority), Entries=entries[start : start + 10]
            )
            assert not response.get("Failed"), response["Failed"]
        return jobs

    def make_dead(self, job: Job, error: dict[str, Any]) -> None:
        """Create the job and let it die the way the worker does (`Worker._kill`): its record
        `dead` first, then its envelope in the queue's DLQ, then its ledger entry."""
        self.store.create(job)
        started = self.store.begin_attempt(job.org_id, job.job_id, lease_s=60)
        assert started is not None
        dead = self.store.kill(started, error, new_burial())
        assert dead is not None
        self.ledger.bury(self.queue, job.priority, dead, error)

    def statuses(self, org_id: str, job_ids: Iterable[str]) -> dict[str, str]:
        return self.store.statuses(org_id, list(job_ids))

    def records(self, org_id: str, job_ids: Iterable[str], workers: int = 16) -> dict[str, Job | None]:
        ids = list(job_ids)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return dict(zip(ids, pool.map(lambda job_id: self.store.get(org_id, job_id), ids), strict=True))

    def wait_final(self, org_id: str, job_ids: Iterable[str], deadline: float, interval: float = 2.0) -> dict[str, str]:
        """Poll until every job is final or the deadline (time.monotonic()) passes; the statuses."""
        ids = list(job_ids)
        while True:
            statuses = self.statuses(org_id, ids)
            if all(statuses.get(job_id) in FINAL for job_id in ids) or time.monotonic() >= deadline:
                return statuses
            time.sleep(interval)


# --- the API, as a client that retries ------------------------------------------------------


@dataclass
class Attempts:
    """What a retrying client saw: answers by status, and the calls that never got one."""

    statuses: Counter[int] = field(default_factory=Counter)
    errors: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def saw(self, status: int | None) -> None:
        with self._lock:
            if status is None:
                self.errors += 1
            else:
                self.statuses[status] += 1

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)


def post_until_accepted(api: Api, path: str, body: dict[str, Any], deadline: float, seen: Attempts) -> ApiReply:
    """POST like a careful client: retry 5xx, 429 (after Retry-After) and network errors until the
    deadline; the body carries an idempotency key, so a retry never makes a second job."""
    delay = 0.5
    while True:
        try:
            reply = api.post(path, body)
        except (OSError, urllib.error.URLError):
            reply = None
        seen.saw(None if reply is None else reply.status)
        if reply is not None and reply.status < 500 and reply.status != 429:
            return reply
        if time.monotonic() >= deadline:
            raise AssertionError(f"POST {path} still failing at the deadline: {reply!r}")
        wait = delay
        if reply is not None and reply.status == 429:
            wait = float(reply.headers.get("retry-after") or 1)
        time.sleep(min(wait, 5.0))
        delay = min(delay * 2, 4.0)


def post_jobs(
    api: Api,
    bodies: Sequence[dict[str, Any]],
    deadline: float,
    seen: Attempts,
    workers: int = 8,
    spread_s: float = 0.0,
) -> list[ApiReply]:
    """POST every body (8 at a time); with `spread_s`, body i waits until i/N of it has passed."""
    start, count = time.monotonic(), max(len(bodies), 1)

    def post(index: int) -> ApiReply:
        time.sleep(max(0.0, start + spread_s * index / count - time.monotonic()))
        return post_until_accepted(api, "/v1/jobs", bodies[index], deadline, seen)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(post, range(len(bodies))))


def webhook_body(
    receiver: CountingReceiver,
    tag: dict[str, Any],
    *,
    priority: str = "normal",
    key: str | None = None,
    max_attempts: int = 10,
    backoff_seconds: int = 1,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "webhook",
        "priority": priority,
        "payload": {"url": receiver.url, "body": tag},
        "max_attempts": max_attempts,
        "backoff_seconds": backoff_seconds,
    }
    if key is not None:
        body["idempotency_key"] = key
    return body


# --- DynamoDB Local: stop and start ---------------------------------------------------------

PID_FILE = ROOT / ".herald" / "run" / "dynamodb.pid"


def dynamodb_up(timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(DYNAMODB, timeout=timeout):
            return True
    except urllib.error.HTTPError as err:  # it answers 400 to a bare GET: it is up
        return err.code < 500
    except OSError:
        return False


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie leader whose children are gone is as good as dead
        return Path(f"/proc/{pgid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@dataclass
class Outage:
    pid_before: int = 0
    pid_after: int = 0
    stopped_at: float = 0.0  # time.time()
    back_at: float = 0.0
    seen_down: bool = False

    @property
    def seconds(self) -> float:
        return self.back_at - self.stopped_at


class DynamoRestart:
    """Stop DynamoDB Local (its whole process group, as `make down` does), then start it again with
    localstack/cloud.py's own start logic; its data survives (-dbPath). `stop_then_restart()`
    returns once it is down and starts it again in the background (`wait()` for it): a webhook
    receiver can take the table away between a worker's effect and its record of it."""

    def __init__(self) -> None:
        self.outage = Outage()
        self.down = threading.Event()  # set once it is stopped
        self.done = threading.Event()  # set when it is back (or failed to come back)
        self.error: BaseException | None = None

    def stop(self) -> None:
        self.outage.pid_before = int(PID_FILE.read_text())
        self.outage.stopped_at = time.time()
        for sig, wait in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.outage.pid_before, sig)
            except ProcessLookupError:
                break
            end = time.monotonic() + wait
            while time.monotonic() < end and _group_alive(self.outage.pid_before):
                time.sleep(0.05)
            if not _group_alive(self.outage.pid_before):
                break
        self.outage.seen_down = not dynamodb_up()
        self.down.set()

    def start(self) -> None:
        try:
            start_dynamodb()
            self.outage.pid_after = int(PID_FILE.read_text())
        except BaseException as err:
            self.error = err
            raise
        finally:
            self.outage.back_at = time.time()
            self.done.set()

    def run(self) -> Outage:
        """Stop, then start again (always, even when the stop failed half-way)."""
        try:
            self.stop()
        finally:
            self.start()
        return self.outage

    def stop_then_restart(self) -> None:
        try:
            self.stop()
        finally:
            threading.Thread(target=self._start_quietly, name="dynamodb-start", daemon=True).start()

    def _start_quietly(self) -> None:
        try:
            self.start()
        except BaseException:  # recorded in self.error; wait() raises it
            pass

    def wait(self, timeout: float = 180.0) -> Outage:
        if not self.done.wait(timeout):
            raise AssertionError(f"DynamoDB Local did not come back within {timeout:.0f} s")
        if self.error is not None:
            raise self.error
        return self.outage


def start_dynamodb() -> None:
    code = "import sys; sys.path.insert(0, 'localstack'); import cloud; cloud.start_dynamodb()"
    subprocess.run(["python3", "-c", code], cwd=ROOT, check=True, capture_output=True, timeout=120)
