"""6. Delay accuracy: how late delayed jobs start, relative to their run_at.

Herald, all on the `high` queue and its deployed worker, all submitted together:
* 5 s and 60 s: webhook jobs through the API (`POST /v1/jobs` with `delay_seconds`), one SQS
  hop each (DelaySeconds = the delay);
* chained: a delay longer than one hop. SQS caps DelaySeconds at 900 s, so a longer delay hops:
  the worker receives the message early, sees the job is not due and sends the next hop with the
  remaining delay (capped again), until run_at. To see that in a minute, the cap is shortened by
  configuration, `HERALD_MAX_QUEUE_DELAY_S` (chalicelib/config.py): these jobs are enqueued in
  this process with the short cap, and the deployed `worker_high` gets the same setting for the
  benchmark's duration (UpdateFunctionConfiguration; only that variable is added, and removed
  again afterwards, also on failure; a run that died half-way is repaired by the next one).
Lateness = started_at - run_at, from the job records (each job must complete, none may start
more than the worker's 1 s early tolerance before its run_at).

Baseline: raw messages with the same DelaySeconds (5, 60, and the chained jobs' total delay as one
hop) on a scratch queue, through the no-op Lambda with the same event source mapping settings,
which reports when it got each message; lateness = received - (sent + delay).

Both include the event source mapping's polling: on an idle queue LocalStack's poller backs off
up to 10 s between empty polls (AWS's long-polls), which dominates the lateness here.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib import request as urlrequest

from bench import jobs as job_records
from bench.cloud import (
    RUN_ID,
    Stack,
    client,
    event_source,
    herald_services,
    noop_function,
    scratch_queue,
)
from bench.harness import BenchFailure, Figure, check, percentile, say

HOP_S = 10  # the shortened SQS hop cap for the chained delay
CHAIN_S = 45  # the chained delay: hops of 10, 10, 10, 10, 5 s
SETTING = "HERALD_MAX_QUEUE_DELAY_S"
MARKER = "HERALD_BENCH_RUN"  # set beside SETTING while a benchmark holds it
EARLY_TOLERANCE_S = 1.0  # chalicelib/jobs/worker.py: a job may start this much before run_at


def _update_env(function: str, change: Any) -> None:
    lam = client("lambda")
    config = lam.get_function_configuration(FunctionName=function)
    variables = dict((config.get("Environment") or {}).get("Variables") or {})
    updated = change(dict(variables))
    if updated == variables:
        return
    lam.update_function_configuration(FunctionName=function, Environment={"Variables": updated})
    deadline = time.monotonic() + 120
    while True:
        config = lam.get_function_configuration(FunctionName=function)
        status = config.get("LastUpdateStatus")
        if status in ("Successful", None):
            return
        check(
            status != "Failed",
            f"delays: updating {function}'s configuration failed: {config.get('LastUpdateStatusReason')} "
            f"({config.get('StateReason')}); is the local cloud healthy?",
        )
        check(time.monotonic() < deadline, f"delays: {function}'s configuration update did not finish in 120 s")
        time.sleep(0.5)


def _without_bench_setting(variables: dict[str, str]) -> dict[str, str]:
    if MARKER in variables:
        variables.pop(MARKER)
        previous = variables.pop(f"{MARKER}_PREVIOUS", None)
        if previous:
            variables[SETTING] = previous
        else:
            variables.pop(SETTING, None)
    return variables


@contextmanager
def short_hops(function: str) -> Iterator[None]:
    """`worker_high` with HERALD_MAX_QUEUE_DELAY_S = HOP_S, restored afterwards (only that variable)."""
    _update_env(function, _without_bench_setting)  # a run that died while holding it

    def hold(variables: dict[str, str]) -> dict[str, str]:
        if SETTING in variables:
            variables[f"{MARKER}_PREVIOUS"] = variables[SETTING]
        variables[SETTING] = str(HOP_S)
        variables[MARKER] = RUN_ID
        return variables

    try:
        _update_env(function, hold)  # inside: a half-done update is undone too
        yield
    finally:
        try:
            _update_env(function, _without_bench_setting)
        except Exception as err:
            say(f"warning: could not restore {function}'s {SETTING}: {err} (the next bench run repairs it)")


def _post_job(stack: Stack, body: dict[str, Any]) -> str:
    req = urlrequest.Request(
        stack.api_url + "/v1/jobs",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {stack.token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urlrequest.urlopen(req, timeout=30) as response:
        check(response.status == 202, f"delays: POST /v1/jobs answered {response.status}")
        return str(json.load(response)["job_id"])


def run(stack: Stack, quick: bool) -> list[Figure]:
    from chalicelib.jobs.service import NewJob
    from tests.contract.webhook_receiver import WebhookReceiver

    k = 3 if quick else 10
    k_chain = 2 if quick else 5
    classes = {"5 s": 5, "60 s": 60}
    chained = f"{CHAIN_S} s in {HOP_S} s hops"
    sqs = client("sqs")
    receiver = WebhookReceiver().start()
    by_class: dict[str, list[str]] = {name: [] for name in [*classes, chained]}
    raw: dict[str, list[float]] = {name: [] for name in by_class}
    try:
        with (
            short_hops(stack.function("worker_high")),
            scratch_queue("delays") as url,
            scratch_queue("delays-replies") as replies,
            noop_function("probe") as function,
            event_source(function, url),
        ):
            svc = herald_services(max_queue_delay_s=HOP_S)
            say(
                f"delays: {k} jobs at 5 s and 60 s (API), {k_chain} at {chained} (worker_high's hop cap "
                f"set to {HOP_S} s), and as many raw probes through the no-op Lambda"
            )
            sent: dict[str, tuple[str, float]] = {}  # probe id -> (class, due)
            for i in range(k):
                for name, delay in classes.items():
                    body = {
                        "type": "webhook",
                        "priority": "high",
                        "delay_seconds": delay,
                        "payload": {"url": receiver.url, "body": {"bench": "delays", "i": i}},
                    }
                    by_class[name].append(_post_job(stack, body))
            for i in range(k_chain):
                job, _ = svc.jobs.enqueue(
                    NewJob(
                        org_id=stack.org_id,
                        type="webhook",
                        priority="high",
                        delay_seconds=CHAIN_S,
                        payload={"url": receiver.url, "body": {"bench": "delays-chain", "i": i}},
                    )
                )
                by_class[chained].append(job.job_id)
            for name, delay in [*classes.items(), (chained, CHAIN_S)]:
                count = k_chain if name == chained else k
                for _ in range(count):
                    probe = uuid.uuid4().hex
                    sqs.send_message(
                        QueueUrl=url, DelaySeconds=delay, MessageBody=json.dumps({"probe": probe, "reply_to": replies})
                    )
                    sent[probe] = (name, delay)
            # Wait for every job and every probe (the longest delay plus slack for polling).
            deadline = time.monotonic() + max(CHAIN_S, *classes.values()) + 90
            all_ids = [j for ids in by_class.values() for j in ids]
            got: set[str] = set()
            while True:
                for message in sqs.receive_message(QueueUrl=replies, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
                    "Messages", []
                ):
                    reply = json.loads(message["Body"])
                    if reply["probe"] in sent and reply["probe"] not in got:
                        name, delay = sent[reply["probe"]]
                        raw[name].append(reply["received"] - (reply["sent"] + delay))
                        got.add(reply["probe"])
                    sqs.delete_message(QueueUrl=replies, ReceiptHandle=message["ReceiptHandle"])
                records = job_records.records(stack.org_id, all_ids)
                states = job_records.statuses_of(records)
                pending = [j for j in all_ids if states.get(j) not in job_records.FINAL]
                if not pending and len(got) == len(sent):
                    break
                if time.monotonic() > deadline:
                    raise BenchFailure(
                        f"delays: not done in time: jobs {job_records.summary(states, all_ids)} "
                        f"(not final, e.g. {pending[:5]}); probes {len(got)} of {len(sent)} answered"
                    )
    finally:
        receiver.stop()

    figures: list[Figure] = []
    for name, ids in by_class.items():
        not_completed = [j for j in ids if records.get(j, {}).get("status") != "completed"]
        check(not not_completed, f"delays: {len(not_completed)} of the {name} jobs did not complete")
        lateness = [records[j]["started_at"] - records[j]["run_at"] for j in ids]
        early = [x for x in lateness if x < -EARLY_TOLERANCE_S]
        check(not early, f"delays: {len(early)} {name} jobs started before their run_at: {early}")
        herald_p = (percentile(lateness, 50), percentile(lateness, 99))
        raw_p = (percentile(raw[name], 50), percentile(raw[name], 99))
        say(
            f"delays: {name}: Herald late by p50 {herald_p[0]:.2f} s, p99 {herald_p[1]:.2f} s; "
            f"raw SQS + no-op Lambda p50 {raw_p[0]:.2f} s, p99 {raw_p[1]:.2f} s"
        )
        note = f"{len(ids)} jobs; started_at - run_at vs raw DelaySeconds message received by a no-op Lambda"
        figures.append(Figure(f"delay lateness p50 ({name})", herald_p[0], "s", raw_p[0], note=note))
        figures.append(Figure(f"delay lateness p99 ({name})", herald_p[1], "s", raw_p[1]))
    return figures
