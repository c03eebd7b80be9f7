"""The local cloud as the benchmarks use it: the stack, a bench organization, scratch resources.

Everything a benchmark creates (queues, the baseline Lambda, its event source mapping, tables)
is created here through context managers that delete it again, also when the benchmark fails.
The stack itself is reused when it runs (never stopped), and started and deployed when not.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.harness import ROOT, BenchFailure, check, say

REGION = "us-east-1"
LOCALSTACK = f"http://127.0.0.1:{os.environ.get('HERALD_LOCALSTACK_PORT', '4566')}"
DYNAMODB = f"http://127.0.0.1:{os.environ.get('HERALD_DYNAMODB_PORT', '8000')}"
STACK_FILE = ROOT / ".herald" / "stack.json"
LAMBDA_ROLE = "arn:aws:iam::000000000000:role/lambda-role"
BENCH_ORG = "herald-bench"
RUN_ID = uuid.uuid4().hex[:8]
# Chalice's settings for every Herald function (.chalice/config.json): the baseline uses them too.
LAMBDA_MEMORY_MB = 512
LAMBDA_TIMEOUT_S = 30
# infra/stack.py deploys the queues with 6 x the worker timeout.
VISIBILITY_TIMEOUT_S = 180


def local_env() -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL": LOCALSTACK,
        "AWS_ENDPOINT_URL_DYNAMODB": DYNAMODB,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "HERALD_STAGE": "local",
    }


def use_local_cloud() -> None:
    """Aim this process's boto3 (and chalicelib's settings) at the local cloud."""
    os.environ.update(local_env())
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "Herald")
    os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "herald")
    # The in-process worker prints EMF metrics to stdout; keep the benchmark's output readable.
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")


_CLIENTS: dict[str, Any] = {}


def client(service: str) -> Any:
    """The benchmark's own clients (never counted: they check and set up, they are not Herald)."""
    if service not in _CLIENTS:
        import boto3
        from botocore.config import Config

        _CLIENTS[service] = boto3.session.Session().client(
            service,
            region_name=REGION,
            endpoint_url=DYNAMODB if service == "dynamodb" else LOCALSTACK,
            aws_access_key_id="test",
            aws_secret_access_key="test",
            config=Config(retries={"mode": "standard", "max_attempts": 6}, max_pool_connections=32),
        )
    return _CLIENTS[service]


# --- the stack -------------------------------------------------------------------------------


@dataclass
class Stack:
    api_url: str
    functions: dict[str, str]  # chalice name (api_handler, worker_normal, ...) -> Lambda name
    token: str = ""  # the bench organization's member token
    org_id: str = BENCH_ORG
    data: dict[str, Any] = field(default_factory=dict)

    def function(self, name: str) -> str:
        if name not in self.functions:
            raise BenchFailure(f"no deployed function {name!r}; deployed: {sorted(self.functions)}")
        return self.functions[name]


def _run(argv: list[str], what: str) -> None:
    result = subprocess.run(argv, cwd=ROOT, check=False)
    if result.returncode != 0:
        raise BenchFailure(f"{what} failed (exit {result.returncode}); see its output above")


def cloud_up() -> bool:
    """Both endpoints answer (asked directly: a part restarted by someone else keeps no pid file)."""
    try:
        with urllib.request.urlopen(f"{LOCALSTACK}/_localstack/health", timeout=3) as response:
            services = json.load(response).get("services", {})
        if not all(services.get(name) in ("available", "running") for name in ("sqs", "lambda")):
            return False
        urllib.request.urlopen(DYNAMODB, timeout=3).close()
    except urllib.error.HTTPError as err:  # DynamoDB Local answers a bare GET with 400: it is up
        return err.code < 500
    except (OSError, ValueError):
        return False
    return True


def localstack_headroom() -> tuple[int, int] | None:
    """(memory mappings of the LocalStack process, the kernel's limit), when it can be read.

    LocalStack 2026.3 on Python 3.13 keeps every thread it starts in a list (`TMP_THREADS`, for
    its shutdown hook), and starts one per Lambda invocation (CloudWatch metrics): a finished
    thread still referenced keeps its 8 MB stack mapped (two mappings). At vm.max_map_count
    (65,530 by default), after about 32,000 invocations, no thread can start: every invocation,
    deploy and configuration update fails with "can't start new thread".
    """
    try:
        pid = int((ROOT / ".herald" / "run" / "localstack.pid").read_text())
        with open(f"/proc/{pid}/maps", "rb") as maps:
            used = sum(1 for _ in maps)
        limit = int(Path("/proc/sys/vm/max_map_count").read_text())
    except (OSError, ValueError):
        return None
    return used, limit


def check_localstack_headroom() -> None:
    headroom = localstack_headroom()
    if headroom is None:
        return
    used, limit = headroom
    if used >= limit - 200:
        raise BenchFailure(
            f"LocalStack has used up its memory mappings ({used:,} of vm.max_map_count {limit:,}): it cannot start "
            "threads any more, so Lambda invocations fail. Restart the local cloud (`make down && make up`)."
        )
    if used > limit * 0.8:
        say(
            f"warning: LocalStack holds {used:,} of {limit:,} memory mappings; about {(limit - used) // 2:,} more "
            "Lambda invocations before it fails (restart it with `make down && make up`)"
        )


def ensure_stack() -> Stack:
    """Start the local cloud if it is down (never stop it), deploy if the code changed, read stack.json."""
    # Give a cloud that is restarting a part (a fault-injection test does) a moment first.
    if not cloud_up() and not any(time.sleep(3) or cloud_up() for _ in range(10)):
        say("the local cloud is not up: starting it (python3 localstack/cloud.py up)")
        _run(["python3", str(ROOT / "localstack" / "cloud.py"), "up"], "starting the local cloud")
    check_localstack_headroom()
    started = time.monotonic()
    # A no-op in seconds when nothing changed since the last deploy (as the test suites do). A
    # deploy racing another one (a test session deploying the same stack) fails: try again once.
    try:
        _run([sys.executable, "-m", "infra.stack", "deploy", "--if-changed"], "deploying the stack")
    except BenchFailure:
        say("the deploy failed (another deploy in progress?): trying again in 20 s")
        time.sleep(20)
        _run([sys.executable, "-m", "infra.stack", "deploy", "--if-changed"], "deploying the stack")
    say(f"stack ready ({time.monotonic() - started:.0f} s)")
    check(STACK_FILE.exists(), f"{STACK_FILE} is missing after the deploy")
    data = json.loads(STACK_FILE.read_text())
    deployed = json.loads((ROOT / ".chalice" / "deployed" / "local.json").read_text())
    functions = {
        r["name"]: r["lambda_arn"].split(":")[-1]
        for r in deployed["resources"]
        if r["resource_type"] == "lambda_function"
    }
    return Stack(api_url=data["api_url"], functions=functions, data=data)


def bench_tokens(stack: Stack) -> Stack:
    """A member token of the bench organization (its jobs stay out of the demo organizations)."""
    from chalicelib.auth import Principal, new_token
    from chalicelib.services import build

    svc = build()
    token = new_token()
    svc.tokens.put(token, Principal(role="member", org_id=BENCH_ORG), name=f"bench run {RUN_ID}")
    stack.token = token
    return stack


def drop_token(token: str) -> None:
    from chalicelib.auth import hash_token

    if not token:
        return
    try:
        client("dynamodb").delete_item(
            TableName="herald-local", Key={"pk": {"S": f"TOKEN#{hash_token(token)}"}, "sk": {"S": "TOKEN"}}
        )
    except Exception as err:  # cleanup must not hide a benchmark's own result or error
        say(f"warning: could not delete the bench token: {err}")


def herald_services(counter: Any = None, redirect: dict[str, str] | None = None, **settings_overrides: Any) -> Any:
    """Herald's own composition root, in this process, against the local cloud.

    `counter` (a CallCounter) is attached to the boto3 session every client comes from;
    `redirect` sends queue names (e.g. herald-local-high) to other queue URLs (scratch queues),
    so in-process work never feeds the deployed workers; `settings_overrides` replace settings.
    """
    import dataclasses

    from chalicelib import aws, services
    from chalicelib.config import settings
    from chalicelib.jobs.queue import JobQueue
    from chalicelib.jobs.service import JobService

    class RedirectedQueue(JobQueue):
        def url_of(self, name: str) -> str:
            if redirect and name in redirect:
                return redirect[name]
            return super().url_of(name)

    services.reset()
    if counter is not None:
        counter.attach(aws._session())
    config = dataclasses.replace(settings(), **settings_overrides) if settings_overrides else settings()
    svc = services.build(config)
    if redirect:
        svc.queue = RedirectedQueue(svc.sqs, config)
        svc.jobs = JobService(svc.store, svc.queue)
    services.use(svc)
    return svc


# --- scratch resources -------------------------------------------------------------------------

STALE_S = 3600  # scratch resources of an earlier run older than this are leftovers of a crash


def sweep() -> None:
    """Delete scratch resources an earlier run could not (it was killed, or the cloud restarted)."""
    now = time.time()
    removed: list[str] = []
    try:
        ddb = client("dynamodb")
        for name in ddb.list_tables().get("TableNames", []):
            if name.startswith("hbench-") and not name.startswith(f"hbench-{RUN_ID}"):
                created = ddb.describe_table(TableName=name)["Table"]["CreationDateTime"].timestamp()
                if now - created > STALE_S:
                    ddb.delete_table(TableName=name)
                    removed.append(name)
        sqs = client("sqs")
        for url in sqs.list_queues(QueueNamePrefix="hbench-").get("QueueUrls", []):
            attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["CreatedTimestamp"])["Attributes"]
            if f"hbench-{RUN_ID}" not in url and now - int(attrs["CreatedTimestamp"]) > STALE_S:
                sqs.delete_queue(QueueUrl=url)
                removed.append(url.rsplit("/", 1)[-1])
        lam = client("lambda")
        for function in lam.list_functions().get("Functions", []):
            name = function["FunctionName"]
            modified = datetime.strptime(function["LastModified"][:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
            stale = now - modified.timestamp() > STALE_S
            if name.startswith("hbench-") and not name.startswith(f"hbench-{RUN_ID}") and stale:
                for mapping in lam.list_event_source_mappings(FunctionName=name).get("EventSourceMappings", []):
                    lam.delete_event_source_mapping(UUID=mapping["UUID"])
                lam.delete_function(FunctionName=name)
                removed.append(name)
    except Exception as err:  # best effort: never keep the benchmarks from running
        say(f"warning: could not sweep old scratch resources: {err}")
    if removed:
        say(f"removed scratch resources left by an earlier run: {', '.join(removed)}")


@contextmanager
def scratch_queue(tag: str, **attributes: str) -> Iterator[str]:
    sqs = client("sqs")
    name = f"hbench-{RUN_ID}-{tag}"
    url = sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": str(VISIBILITY_TIMEOUT_S), **attributes})[
        "QueueUrl"
    ]
    try:
        yield str(url)
    finally:
        try:
            sqs.delete_queue(QueueUrl=url)
        except Exception as err:  # cleanup must not hide the benchmark's own error
            say(f"warning: could not delete scratch queue {name}: {err}")


def queue_arn(url: str) -> str:
    return str(client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"])


def queue_counts(url: str) -> tuple[int, int, int]:
    """(visible, in flight, delayed) messages."""
    attrs = client("sqs").get_queue_attributes(
        QueueUrl=url,
        AttributeNames=[
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ],
    )["Attributes"]
    return (
        int(attrs["ApproximateNumberOfMessages"]),
        int(attrs["ApproximateNumberOfMessagesNotVisible"]),
        int(attrs["ApproximateNumberOfMessagesDelayed"]),
    )


# The baseline function: a no-op, except that a message whose body starts with {"probe" makes it
# report when it got it (the delay benchmark), to the queue the probe names.
NOOP_SOURCE = """\
import json
import time

_sqs = None


def handler(event, context):
    records = event.get("Records") or []
    probes = [r for r in records if r.get("body", "").startswith('{"probe"')]
    if probes:
        global _sqs
        now = time.time()
        if _sqs is None:
            import boto3

            _sqs = boto3.client("sqs")
        replies = {}
        for r in probes:
            body = json.loads(r["body"])
            replies.setdefault(body["reply_to"], []).append(
                {"probe": body["probe"], "received": now, "sent": int(r["attributes"]["SentTimestamp"]) / 1000}
            )
        for url, items in replies.items():
            for i in range(0, len(items), 10):
                entries = [{"Id": str(n), "MessageBody": json.dumps(x)} for n, x in enumerate(items[i : i + 10])]
                _sqs.send_message_batch(QueueUrl=url, Entries=entries)
    return {"batchItemFailures": []}
"""


def _zip(source: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("noop.py", source)
    return buffer.getvalue()


@contextmanager
def noop_function(tag: str) -> Iterator[str]:
    """The baseline Lambda: python3.11, same memory and timeout as Herald's functions."""
    lam = client("lambda")
    name = f"hbench-{RUN_ID}-{tag}"
    lam.create_function(
        FunctionName=name,
        Runtime="python3.11",
        Role=LAMBDA_ROLE,
        Handler="noop.handler",
        Code={"ZipFile": _zip(NOOP_SOURCE)},
        Timeout=LAMBDA_TIMEOUT_S,
        MemorySize=LAMBDA_MEMORY_MB,
    )
    try:
        lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 120})
        yield name
    finally:
        try:
            lam.delete_function(FunctionName=name)
        except Exception as err:
            say(f"warning: could not delete the baseline function {name}: {err}")


@contextmanager
def event_source(function: str, queue_url: str) -> Iterator[str]:
    """The SQS trigger, with Herald's settings (infra/stack.py): batch 10, no batching window,
    ReportBatchItemFailures."""
    lam = client("lambda")
    uuid_ = lam.create_event_source_mapping(
        EventSourceArn=queue_arn(queue_url),
        FunctionName=function,
        BatchSize=10,
        MaximumBatchingWindowInSeconds=0,
        FunctionResponseTypes=["ReportBatchItemFailures"],
        Enabled=True,
    )["UUID"]
    try:
        deadline = time.monotonic() + 60
        while lam.get_event_source_mapping(UUID=uuid_)["State"] != "Enabled":
            check(time.monotonic() < deadline, f"the baseline's event source mapping {uuid_} never became Enabled")
            time.sleep(0.5)
        yield str(uuid_)
    finally:
        try:
            lam.delete_event_source_mapping(UUID=uuid_)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    lam.get_event_source_mapping(UUID=uuid_)
                except lam.exceptions.ResourceNotFoundException:
                    break
                time.sleep(0.5)
        except Exception as err:
            say(f"warning: could not delete event source mapping {uuid_}: {err}")


def herald_mapping(function: str) -> dict[str, Any]:
    """The deployed worker's event source mapping (to check the baseline copies its settings)."""
    mappings = client("lambda").list_event_source_mappings(FunctionName=function)["EventSourceMappings"]
    check(mappings, f"{function} has no event source mapping")
    return dict(mappings[0])


@contextmanager
def scratch_table(tag: str) -> Iterator[str]:
    """A copy of Herald's table (keys, GSI, on-demand) in DynamoDB Local, deleted afterwards."""
    ddb = client("dynamodb")
    source = ddb.describe_table(TableName="herald-local")["Table"]
    name = f"hbench-{RUN_ID}-{tag}"
    spec: dict[str, Any] = {
        "TableName": name,
        "AttributeDefinitions": source["AttributeDefinitions"],
        "KeySchema": source["KeySchema"],
        "BillingMode": "PAY_PER_REQUEST",
    }
    if source.get("GlobalSecondaryIndexes"):
        spec["GlobalSecondaryIndexes"] = [
            {"IndexName": g["IndexName"], "KeySchema": g["KeySchema"], "Projection": g["Projection"]}
            for g in source["GlobalSecondaryIndexes"]
        ]
    ddb.create_table(**spec)
    try:
        ddb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 0.5, "MaxAttempts": 60})
        yield name
    finally:
        try:
            ddb.delete_table(TableName=name)
        except Exception as err:
            say(f"warning: could not delete scratch table {name}: {err}")
