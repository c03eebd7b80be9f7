"""Secrets and abuse: tokens never stored or logged in clear, the SSRF guard at the API and at
delivery, redirects not followed, the request body cap, and the per-organization rate limit.

The SSRF guard is off on the local stage (its webhook targets are local servers), so the guard is
shown in-process: the real Chalice app and worker over moto with `allow_private_targets` false,
as on dev and prod. The rest runs against the deployed local stack.
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from chalicelib.api.ratelimit import WINDOW_S, rate_key
from chalicelib.auth import new_token
from chalicelib.ddb import to_item
from chalicelib.services import Services
from tests.contract.webhook_receiver import Reply
from tests.reliability.harness import TABLE, CountingReceiver, Tenant
from tests.reliability.report import ReliabilityReport
from tests.support.api import Api
from tests.support.cloud import ROOT, LocalCloud
from tests.support.moto_stack import moto_services

pytestmark = pytest.mark.reliability

TOKEN_SHAPE = re.compile(rb"hrld_[A-Za-z0-9_-]{43}")
MAX_RATE = 1_000_000  # the highest limit the settings accept: a count there is over any limit
LOGS = ROOT / ".herald" / "logs"


@pytest.fixture
def counting_receiver() -> Iterator[CountingReceiver]:
    receiver = CountingReceiver()
    receiver.start()
    yield receiver
    receiver.stop()


# --- tokens: hashed at rest, never logged -----------------------------------------------------


def all_tokens(stack: dict[str, Any]) -> list[str]:
    return [t for roles in stack["tokens"].values() for t in roles.values()] + [stack["operator_token"]]


def scan_table(ddb: Any, segments: int = 4) -> Iterator[str]:
    """Every item of the table as one JSON string (a parallel scan)."""

    def segment(n: int) -> list[str]:
        out: list[str] = []
        request: dict[str, Any] = {"TableName": TABLE, "Segment": n, "TotalSegments": segments}
        while True:
            page = ddb.scan(**request)
            out += [json.dumps(item, default=str) for item in page.get("Items", [])]
            if "LastEvaluatedKey" not in page:
                return out
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    with ThreadPoolExecutor(max_workers=segments) as pool:
        for items in pool.map(segment, range(segments)):
            yield from items


def test_tokens_are_stored_hashed_and_never_in_clear_anywhere_in_the_table(
    stack: dict[str, Any],
    local_cloud: LocalCloud,
    tenants: Callable[[str], Tenant],
    reliability_report: ReliabilityReport,
) -> None:
    tenant = tenants("rel-sec")
    tokens = [*all_tokens(stack), tenant.member_token, tenant.admin_token]
    for token in tokens:  # each one works (so it is in the table, hashed) ...
        assert Api(stack["api_url"], token).get("/v1/admin/queues").status in (200, 403)
    items = 0
    found: list[str] = []
    shaped: list[bytes] = []
    for text in scan_table(local_cloud.client("dynamodb")):
        items += 1
        found += [t[:12] for t in tokens if t in text]
        shaped += TOKEN_SHAPE.findall(text.encode())
    reliability_report.note("secrets", f"scanned {items} table items for {len(tokens)} tokens: {len(found)} found")
    assert items > 0
    assert not found, f"plaintext tokens in the table: {found}"  # ... and none is there in clear
    assert not shaped, f"token-shaped strings in the table: {[s[:12] for s in shaped]}"


def test_tokens_never_appear_in_the_logs(
    stack: dict[str, Any], local_cloud: LocalCloud, reliability_report: ReliabilityReport
) -> None:
    """The functions' output (CloudWatch Logs of the local cloud, as on AWS) and the local cloud's
    own log files, right after every token was used on a good and on an error path."""
    api = Api(stack["api_url"])
    unknown = new_token()  # a refused token must not be logged either
    tokens = [*all_tokens(stack), unknown]
    since = int((time.time() - 60) * 1000)
    for token in tokens:
        api.as_(token).get("/v1/jobs?limit=1")
        api.as_(token).post("/v1/jobs", {"type": "nope"})  # an error path
        api.as_(token).get("/v1/jobs/nope%00")
    time.sleep(3)  # the functions' output is shipped after each invocation
    hits: list[str] = []
    events, groups = 0, 0
    for group, messages in function_logs(local_cloud.client("logs"), since):
        groups += 1
        events += len(messages)
        text = "\n".join(messages)
        hits += [f"{group}: {token[:12]}..." for token in tokens if token in text]
    assert groups and events, "no function output found: the check would prove nothing"
    files = sorted(LOGS.glob("*.log"))
    for path in files:
        hits += [f"{path.name}: {token[:12]}..." for token in tokens if contains(path, token.encode())]
    megabytes = sum(path.stat().st_size for path in files) / 1e6
    reliability_report.note(
        "secrets",
        f"{len(tokens)} tokens searched in {events} function log events ({groups} log groups) and "
        f"{megabytes:.0f} MB of local cloud logs: {len(hits)} found",
    )
    assert not hits, hits


def function_logs(logs: Any, since_ms: int) -> Iterator[tuple[str, list[str]]]:
    """(log group, messages since `since_ms`) of every Herald function on the local stage."""
    groups = logs.describe_log_groups(logGroupNamePrefix="/aws/lambda/herald-local")["logGroups"]
    for group in groups:
        name = group["logGroupName"]
        request: dict[str, Any] = {"logGroupName": name, "startTime": since_ms}
        messages: list[str] = []
        while True:
            page = logs.filter_log_events(**request)
            messages += [event["message"] for event in page.get("events", [])]
            if not page.get("nextToken"):
                break
            request["nextToken"] = page["nextToken"]
        yield name, messages


def contains(path: Path, needle: bytes, chunk: int = 8 << 20) -> bool:
    """Does the file hold `needle`? Read in chunks that overlap by len(needle)."""
    tail = b""
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            if needle in tail + block:
                return True
            tail = block[-len(needle) :]
    return False


# --- SSRF: the guard as dev and prod run it (in-process, over moto) ---------------------------

LITERALS = [
    "http://localhost/hook",  # a name, but one that always means loopback
    "http://127.0.0.1/hook",
    "http://127.1/hook",  # legacy forms the OS accepts
    "http://2130706433/hook",
    "http://0x7f000001/hook",
    "http://0.0.0.0/hook",
    "http://[::1]/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://10.1.2.3/hook",
    "http://172.16.0.9/hook",
    "http://192.168.1.20/hook",
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "http://[fe80::1]/hook",
    "http://100.64.0.1/hook",  # CGNAT
    "http://224.0.0.1/hook",  # multicast
    "https://[fd00::1]:8443/hook",  # unique local
]


@pytest.fixture
def guarded() -> Iterator[tuple[Any, Services]]:
    """The app and its services over moto with the guard on (allow_private_targets false)."""
    from chalice.test import Client

    from app import app

    with moto_services(HERALD_ALLOW_PRIVATE_TARGETS="false") as svc, Client(app) as client:
        assert svc.settings.allow_private_targets is False
        yield client, svc


def post_job(client: Any, body: dict[str, Any]) -> tuple[int, Any]:
    response = client.http.post(
        "/v1/jobs",
        headers={"Authorization": "Bearer member-a", "Content-Type": "application/json"},
        body=json.dumps(body),
    )
    return response.status_code, json.loads(response.body)


def run_worker(svc: Services, priority: str = "normal") -> None:
    url = svc.queue.url_of(svc.settings.queue_name(priority))
    messages = svc.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]).get(
        "Messages", []
    )
    records = [
        {
            "messageId": m["MessageId"],
            "receiptHandle": m["ReceiptHandle"],
            "body": m["Body"],
            "attributes": {"ApproximateReceiveCount": "1"},
            "messageAttributes": {},
            "md5OfBody": m["MD5OfBody"],
            "eventSource": "aws:sqs",
            "eventSourceARN": f"arn:aws:sqs:us-east-1:123456789012:{priority}",
            "awsRegion": "us-east-1",
        }
        for m in messages
    ]
    svc.worker.handle_batch({"Records": records}, None, priority)


def test_the_api_refuses_webhook_targets_that_are_private_ip_literals(guarded: tuple[Any, Services]) -> None:
    client, svc = guarded
    for url in LITERALS:
        status, body = post_job(client, {"type": "webhook", "payload": {"url": url, "body": {}}})
        assert status == 400, (url, body)
        assert body["error"]["code"] == "validation_error" and body["error"]["details"][0]["field"] == "payload.url"
    assert svc.store.list("org-a")[0] == []  # nothing was created


# Names and what a (fake) DNS answers for them: each holds at least one non-public address.
RESOLVING = {
    "metadata.herald-test.example": ["169.254.169.254"],
    "intranet.herald-test.example": ["10.0.0.7"],
    "rebind.herald-test.example": ["93.184.216.34", "127.0.0.1"],  # one bad answer among good ones
    "v6.herald-test.example": ["fd12:3456::1"],
}


def test_names_resolving_to_private_addresses_are_refused_at_delivery(
    guarded: tuple[Any, Services], counting_receiver: CountingReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, svc = guarded
    real = socket.getaddrinfo

    def fake_dns(host: Any, port: Any, *args: Any, **kw: Any) -> Any:
        if host in RESOLVING:
            return [
                (socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port))
                for ip in RESOLVING[host]
            ]
        return real(host, port, *args, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", fake_dns)
    ids = {}
    for host in RESOLVING:
        url = f"http://{host}:{counting_receiver.port}/hook"
        status, job = post_job(client, {"type": "webhook", "payload": {"url": url, "body": {"x": 1}}})
        assert status == 202, job  # a name: resolved and vetted at delivery time (DNS answers change)
        ids[host] = job["job_id"]
    run_worker(svc)
    for host, job_id in ids.items():
        dead = svc.store.get("org-a", job_id)
        assert dead is not None and dead.status == "dead" and dead.attempts == 1, (host, dead)
        assert dead.error is not None and dead.error["code"] == "webhook_target_forbidden", (host, dead.error)
    assert counting_receiver.requests == []  # nothing ever connected


def test_a_redirect_is_not_followed_so_it_cannot_lead_to_the_metadata_service(
    tenants: Callable[[str], Tenant], counting_receiver: CountingReceiver
) -> None:
    tenant = tenants("rel-redirect")
    metadata = "http://169.254.169.254/latest/meta-data/iam/security-credentials/"
    counting_receiver.policy = lambda _: Reply(302, {"Location": metadata})
    reply = tenant.member.post("/v1/jobs", {"type": "webhook", "payload": {"url": counting_receiver.url, "body": {}}})
    assert reply.status == 202, reply
    job = tenant.member.wait_for_job(reply.body["job_id"], {"dead", "completed"}, timeout=120)
    assert job["status"] == "dead" and job["error"]["code"] == "http_3xx_redirect" and job["attempts"] == 1
    assert len(counting_receiver.requests) == 1


# --- the request body cap ---------------------------------------------------------------------


def test_a_body_over_256_kib_is_refused_with_413_and_creates_nothing(tenants: Callable[[str], Tenant]) -> None:
    tenant = tenants("rel-413")
    padding = "x" * (260 * 1024)
    big = json.dumps({"type": "webhook", "payload": {"url": "http://127.0.0.1:9/hook", "body": {"pad": padding}}})
    reply = tenant.member.post("/v1/jobs", raw=big.encode())
    assert reply.status == 413, reply
    assert reply.body["error"]["code"] == "payload_too_large"
    assert tenant.member.get("/v1/jobs").body["items"] == []


# --- the per-organization rate limit on the deployed API --------------------------------------


def test_an_organization_over_its_rate_limit_gets_429_with_retry_after_and_others_do_not(
    tenants: Callable[[str], Tenant], local_cloud: LocalCloud, reliability_report: ReliabilityReport
) -> None:
    """The deployed limit is far above any test's load; the count of this test's organization is
    set to the highest limit there can be, directly in the very item the API's UpdateItem counts
    on (this window's and the next), so its next request is over the limit whatever it is."""
    noisy, quiet = tenants("rel-noisy"), tenants("rel-quiet")
    ddb = local_cloud.client("dynamodb")
    now = time.time()
    windows = [int(now // WINDOW_S) + i for i in (0, 1)]
    for window in windows:
        ddb.put_item(
            TableName=TABLE,
            Item={**rate_key(noisy.org_id, window), **to_item({"n": MAX_RATE, "expires_at": 0})},
        )
    try:
        refused = noisy.member.get("/v1/jobs")
        assert refused.status == 429, refused
        assert refused.body["error"]["code"] == "rate_limited"
        retry_after = int(refused.headers["retry-after"])
        assert 1 <= retry_after <= 2 * WINDOW_S
        assert noisy.admin.post("/v1/jobs", {"type": "nope"}).status == 429  # any route, any role of the org
        assert quiet.member.get("/v1/jobs").status == 200  # other organizations are not slowed down
    finally:
        for window in windows:
            ddb.delete_item(TableName=TABLE, Key=rate_key(noisy.org_id, window))
    assert noisy.member.get("/v1/jobs").status == 200
    reliability_report.note("abuse", f"rate limit: 429 with Retry-After {retry_after} s; other orgs unaffected")
