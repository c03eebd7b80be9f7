"""3. AWS calls per job, from API request to completed job, and what they cost per million jobs.

The API Lambda and the workers run as separate processes, so their calls cannot be counted from
here. Instead the same code paths run in this process, against the same local cloud, with
botocore event hooks on every client (CallCounter): the route through Chalice's own test client
over `app` (`chalice.test.Client`: auth, validation, enqueue), then the message is received from
the queue and handed to the worker's Lambda entry point (`Worker.handle_batch`, which runs the
job's handler: SNS, SES, DynamoDB), and deleted (what the event source mapping does). Messages go
to a scratch queue instead of Herald's, so the deployed workers never see them.

Counts are warm (steady state): one job of each kind runs first, so the per-container caches
(token 30 s, webhook secret 60 s, SMS provider config, queue URLs) are filled, as they are for
all but the first request of a Lambda container. What a cold container adds is reported too.
The event source mapping's ReceiveMessage and DeleteMessageBatch are billed SQS requests: at
batch size 10 under load they cost 0.2 calls per job (counted here one per job, then amortized).
Cost per million jobs prices those calls (AWS public list prices, us-east-1: `PRICES`).
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from bench.cloud import ROOT, Stack, herald_services, scratch_queue
from bench.harness import CallCounter, Figure, Tally, check, say

# USD, us-east-1, public list prices (see docs/benchmarks.md for the pages and the date).
PRICES = {
    "apigw_rest_per_million": 3.50,  # REST API requests, first 333 M a month
    "lambda_request_per_million": 0.20,
    "lambda_gb_second": 0.0000166667,  # x86
    "sqs_per_million": 0.40,  # standard queue requests (each 64 KB chunk of a payload is one)
    "ddb_wru_per_million": 0.625,  # on-demand write request units
    "ddb_rru_per_million": 0.125,  # on-demand read request units
}
PRICES_DATE = "2026-11-26"
LAMBDA_GB = 0.5  # .chalice/config.json: lambda_memory_size 512
BATCH = 10  # event source mapping batch size: one worker invocation, one receive, one delete per 10 jobs
LAMBDA_INVOCATIONS = 1 + 1 / BATCH  # per job: the API's own, and a tenth of a worker's
# Lambda time's price: USD per millisecond of Lambda time, per million jobs (at LAMBDA_GB).
LAMBDA_USD_PER_MS_PER_MILLION = LAMBDA_GB * PRICES["lambda_gb_second"] / 1000 * 1e6

# The floor (docs/benchmarks.md): what any durable, observable job needs, per job.
#   API: 1 write (the job record: GET /v1/jobs/{id} must find it) + 1 SendMessage
#   queue: ReceiveMessage + DeleteMessageBatch per batch of 10 = 0.2
#   worker: 1 conditional UpdateItem that both starts the attempt and returns the record
#           (ReturnValues=ALL_NEW; the envelope holds ids only), 1 UpdateItem to complete it,
#           plus the provider's own call (SNS Publish for an SMS; a webhook is HTTP, not AWS).
FLOOR_WRITES = 3  # job record, begin, complete
FLOOR_WRU = 2 * FLOOR_WRITES  # each also writes the job list's GSI (GET /v1/jobs): 2 WRU per write of <= 1 KB
FLOOR_SQS = 1 + 2 / BATCH


@dataclass
class Kind:
    name: str
    priority: str
    provider_calls: int  # SNS/SES calls the job's purpose needs
    request: Any  # (client, i) -> response
    job_ids: list[str] = field(default_factory=list)

    @property
    def floor(self) -> float:
        return FLOOR_WRITES + FLOOR_SQS + self.provider_calls


@dataclass
class PerJob:
    api: Tally
    worker: Tally
    esm: Tally
    jobs: int
    api_ms: float
    worker_ms: float

    def calls(self) -> float:
        return (self.api.total() + self.worker.total()) / self.jobs + self.esm.total() / self.jobs / BATCH

    def sqs_calls(self) -> float:
        return (self.api.total("sqs") + self.worker.total("sqs")) / self.jobs + self.esm.total() / self.jobs / BATCH

    def wru(self) -> float:
        return (self.api.write_units + self.worker.write_units) / self.jobs

    def rru(self) -> float:
        return (self.api.read_units + self.worker.read_units) / self.jobs

    def split(self) -> str:
        def ops(tally: Tally, per: float) -> str:
            def one(key: str, n: int) -> str:
                units = f" ({tally.units[key] / per:g} RU)" if tally.units.get(key) else ""
                return f"{n / per:g} {key}{units}"

            return " + ".join(one(key, n) for key, n in sorted(tally.calls.items()))

        return f"API: {ops(self.api, self.jobs)}; worker: {ops(self.worker, self.jobs)}"

    def breakdown(self) -> str:
        merged: dict[str, float] = {}
        for tally, weight in ((self.api, 1.0), (self.worker, 1.0), (self.esm, 1 / BATCH)):
            for key, n in tally.calls.items():
                merged[key] = merged.get(key, 0) + n * weight / self.jobs
        return ", ".join(f"{key} {n:g}" for key, n in sorted(merged.items(), key=lambda kv: (-kv[1], kv[0])))


def cost_per_million(calls_sqs: float, wru: float, rru: float) -> float:
    """USD per million jobs, requests only: API Gateway + Lambda (1 API + 1/10 worker invocation) + SQS
    + DynamoDB. Lambda time is priced apart (LAMBDA_USD_PER_MS_PER_MILLION)."""
    p = PRICES
    per_job = (
        p["apigw_rest_per_million"] / 1e6
        + LAMBDA_INVOCATIONS * p["lambda_request_per_million"] / 1e6
        + calls_sqs * p["sqs_per_million"] / 1e6
        + wru * p["ddb_wru_per_million"] / 1e6
        + rru * p["ddb_rru_per_million"] / 1e6
    )
    return per_job * 1e6


class _Context:
    """What the worker reads from a Lambda context."""

    function_name = "bench-worker"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:000000000000:function:bench-worker"

    def __init__(self) -> None:
        self.aws_request_id = uuid.uuid4().hex
        self._deadline = time.monotonic() + 30

    def get_remaining_time_in_millis(self) -> int:
        return int((self._deadline - time.monotonic()) * 1000)


def _lambda_record(message: dict[str, Any], arn: str) -> dict[str, Any]:
    """An SQS message as the event source mapping hands it to the function."""
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": message.get("Attributes", {}),
        "messageAttributes": {
            name: {"stringValue": v.get("StringValue"), "dataType": v.get("DataType", "String")}
            for name, v in (message.get("MessageAttributes") or {}).items()
        },
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": arn,
        "awsRegion": "us-east-1",
    }


def run(stack: Stack, per_kind: int) -> list[Figure]:
    from chalice.test import Client

    from chalicelib.config import PRIORITIES, dlq_name, queue_name
    from tests.contract.webhook_receiver import WebhookReceiver

    counter = CallCounter()
    figures: list[Figure] = []
    receiver = WebhookReceiver().start()
    try:
        with scratch_queue("calls") as url, scratch_queue("calls-dlq") as dlq_url:
            redirect = {queue_name("local", p): url for p in PRIORITIES}
            redirect |= {dlq_name("local", p): dlq_url for p in PRIORITIES}
            svc = herald_services(counter, redirect=redirect)
            if str(ROOT) not in sys.path:
                sys.path.insert(0, str(ROOT))
            import app as herald_app  # the API Lambda's module: every route, wired as deployed

            sqs = svc.sqs
            arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            headers = {"Authorization": f"Bearer {stack.token}", "Content-Type": "application/json"}
            tag = uuid.uuid4().hex[:6]

            def sms(client: Any, i: int) -> Any:
                body = {
                    "user_id": f"bench-{tag}-{i}",
                    "phone_number": f"+1555{i:07d}",
                    "message": "bench alert",
                    "alert_type": "temperature",
                    "severity": "critical",
                }
                return client.http.post(f"/v1/alerts/bench-{tag}/notify", headers=headers, body=json.dumps(body))

            def webhook(client: Any, i: int) -> Any:
                body = {"type": "webhook", "payload": {"url": receiver.url, "body": {"i": i}}}
                return client.http.post("/v1/jobs", headers=headers, body=json.dumps(body))

            def escalation(client: Any, i: int) -> Any:
                body = {"level": 1, "repeat": 0, "delay_seconds": 0, "contact": {"phone_number": f"+1555{i:07d}"}}
                return client.http.post(
                    f"/v1/incidents/bench-{tag}-{i}/escalations", headers=headers, body=json.dumps(body)
                )

            kinds = [
                Kind("SMS alert", "critical", 1, sms),
                Kind("webhook job", "normal", 0, webhook),
                Kind("escalation (SMS)", "critical", 1, escalation),
            ]
            results: dict[str, PerJob] = {}
            cold: dict[str, int] = {}
            with Client(herald_app.app) as client:
                for kind in kinds:
                    for round_ in ["cold"] + ["warm"] * per_kind:
                        phase = f"{kind.name}:{round_}"
                        began = time.perf_counter()
                        with counter.in_phase(f"{phase}:api"):
                            reply = kind.request(client, len(kind.job_ids))
                        api_s = time.perf_counter() - began
                        check(
                            reply.status_code in (201, 202),
                            f"calls: {kind.name}: {reply.status_code} {reply.body[:300]!r}",
                        )
                        job_id = json.loads(reply.body)["job_id"]
                        kind.job_ids.append(job_id)
                        with counter.in_phase(f"{phase}:esm"):
                            got = sqs.receive_message(
                                QueueUrl=url,
                                MaxNumberOfMessages=10,
                                WaitTimeSeconds=5,
                                AttributeNames=["All"],
                                MessageAttributeNames=["All"],
                            ).get("Messages", [])
                        check(len(got) == 1, f"calls: {kind.name}: expected its one message, got {len(got)}")
                        began = time.perf_counter()
                        with counter.in_phase(f"{phase}:worker"):
                            outcome = svc.worker.handle_batch(
                                {"Records": [_lambda_record(m, arn) for m in got]}, _Context(), kind.priority
                            )
                        worker_s = time.perf_counter() - began
                        check(not outcome.get("batchItemFailures"), f"calls: {kind.name}: the worker failed: {outcome}")
                        with counter.in_phase(f"{phase}:esm"):
                            sqs.delete_message_batch(
                                QueueUrl=url, Entries=[{"Id": "0", "ReceiptHandle": got[0]["ReceiptHandle"]}]
                            )
                        with counter.paused():
                            job = svc.store.get(stack.org_id, job_id)
                        check(
                            job is not None and job.status == "completed",
                            f"calls: {kind.name}: job {job_id} is {job.status if job else 'missing'}, not completed "
                            f"({job.result if job else ''} {job.error if job else ''})",
                        )
                        counter.phases[f"{phase}:timing"].seconds["api"] += api_s
                        counter.phases[f"{phase}:timing"].seconds["worker"] += worker_s
                    warm = [counter.phases[f"{kind.name}:warm:{part}"] for part in ("api", "worker", "esm")]
                    timing = counter.phases[f"{kind.name}:warm:timing"].seconds
                    results[kind.name] = PerJob(
                        *warm,
                        jobs=per_kind,
                        api_ms=timing["api"] * 1000 / per_kind,
                        worker_ms=timing["worker"] * 1000 / per_kind,
                    )
                    cold_calls = sum(counter.phases[f"{kind.name}:cold:{p}"].total() for p in ("api", "worker"))
                    cold[kind.name] = cold_calls - round(
                        (results[kind.name].api.total() + results[kind.name].worker.total()) / per_kind
                    )
    finally:
        receiver.stop()

    prices = PRICES
    for kind in kinds:
        r = results[kind.name]
        # Requests only: the Lambda duration measured here is this machine's (local DynamoDB and SQS,
        # shared cores), not AWS's; its price per millisecond is in the note.
        floor_cost = cost_per_million(FLOOR_SQS, FLOOR_WRU, 0.0)
        cost = cost_per_million(r.sqs_calls(), r.wru(), r.rru())
        say(
            f"calls: {kind.name}: {r.calls():.1f} AWS calls per job (floor {kind.floor:.1f}): {r.breakdown()}; "
            f"DynamoDB {r.wru():.1f} WRU + {r.rru():.1f} RRU; API {r.api_ms:.0f} ms, worker {r.worker_ms:.0f} ms "
            f"in-process; a cold container adds {cold[kind.name]} calls\n    {r.split()}"
        )
        figures.append(
            Figure(
                f"AWS calls per job: {kind.name}",
                r.calls(),
                "calls",
                kind.floor,
                note=f"{r.breakdown()} (cold container: +{cold[kind.name]})",
            )
        )
        figures.append(
            Figure(
                f"cost per million jobs (requests): {kind.name}",
                cost,
                "USD",
                floor_cost,
                note=f"requests: API Gateway + {LAMBDA_INVOCATIONS:g} Lambda invocations + {r.sqs_calls():.1f} SQS "
                f"requests + {r.wru():.1f} WRU + {r.rru():.1f} RRU (floor: {FLOOR_SQS:g} SQS, {FLOOR_WRU:g} WRU); "
                f"list prices us-east-1 {PRICES_DATE}: API Gateway REST ${prices['apigw_rest_per_million']:.2f}/M, "
                f"Lambda ${prices['lambda_request_per_million']:.2f}/M, SQS ${prices['sqs_per_million']:.2f}/M, "
                f"DynamoDB on-demand ${prices['ddb_wru_per_million']:.3f}/M WRU, "
                f"${prices['ddb_rru_per_million']:.3f}/M RRU; plus "
                f"${LAMBDA_USD_PER_MS_PER_MILLION:.4f} per ms of Lambda time, per million jobs, at "
                f"{LAMBDA_GB * 1024:g} MB (here {r.api_ms + r.worker_ms:.0f} ms in-process, local and loaded); "
                "SNS/SES message fees excluded",
            )
        )
    return figures
