"""Reading many job records at once (the benchmarks' checks), without going through Herald."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from bench.cloud import client
from bench.harness import BenchFailure, wait_until

TABLE = "herald-local"
FINAL = frozenset({"completed", "dead", "cancelled"})  # a job in one of these will not change again


def _parse(value: str | None) -> float | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _patiently(call: Any, for_s: float = 90.0) -> Any:
    """The benchmark's own reads wait out a DynamoDB Local restart (fault-injection tests do them)."""
    from botocore.exceptions import ConnectionError as BotoConnectionError

    deadline = time.monotonic() + for_s
    while True:
        try:
            return call()
        except BotoConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def records(org_id: str, job_ids: list[str], table: str = TABLE) -> dict[str, dict[str, Any]]:
    """{job_id: {status, attempts, run_at, started_at, finished_at (epoch seconds)}} of those found."""
    ddb = client("dynamodb")
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(job_ids), 100):
        keys = [{"pk": {"S": f"JOB#{org_id}#{j}"}, "sk": {"S": "JOB"}} for j in job_ids[start : start + 100]]
        request: dict[str, Any] = {
            table: {
                "Keys": keys,
                "ConsistentRead": True,
                "ProjectionExpression": "job_id, #s, attempts, run_at, started_at, finished_at, created_at",
                "ExpressionAttributeNames": {"#s": "status"},
            }
        }
        for attempt in range(10):
            response = _patiently(lambda request=request: ddb.batch_get_item(RequestItems=request))
            for item in response.get("Responses", {}).get(table, []):
                found[item["job_id"]["S"]] = {
                    "status": item["status"]["S"],
                    "attempts": int(item.get("attempts", {}).get("N", "0")),
                    "run_at": _parse(item.get("run_at", {}).get("S")),
                    "created_at": _parse(item.get("created_at", {}).get("S")),
                    "started_at": _parse(item.get("started_at", {}).get("S")),
                    "finished_at": _parse(item.get("finished_at", {}).get("S")),
                }
            request = response.get("UnprocessedKeys") or {}
            if not request:
                break
            time.sleep(0.05 * 2**attempt)
        else:
            raise BenchFailure("DynamoDB Local kept keys unprocessed: could not read the job records")
    return found


def statuses_of(found: dict[str, dict[str, Any]]) -> dict[str, str]:
    """{job_id: status} of records read with `records`."""
    return {job_id: r["status"] for job_id, r in found.items()}


def wait_final(org_id: str, job_ids: list[str], timeout: float, what: str) -> dict[str, dict[str, Any]]:
    """Poll the records (every 2 s) until every job is in a FINAL state; returns the last read.

    BenchFailure at the deadline, naming the states and some of the jobs that were not final."""
    last: dict[str, dict[str, Any]] = {}

    def all_final() -> bool:
        nonlocal last
        last = records(org_id, job_ids)
        return all(last.get(j, {}).get("status") in FINAL for j in job_ids)

    try:
        wait_until(all_final, timeout, interval=2, what=what)
    except BenchFailure as failure:
        states = statuses_of(last)
        pending = [j for j in job_ids if states.get(j) not in FINAL]
        raise BenchFailure(
            f"{failure}: {summary(states, job_ids)}; {len(pending)} not final, e.g. "
            + ", ".join(f"{j} ({states.get(j, 'missing')})" for j in pending[:5])
        ) from None
    return last


def summary(states: dict[str, str], expected: list[str]) -> str:
    """'1990 completed, 8 queued, 2 missing' (for failure messages)."""
    counts: dict[str, int] = {}
    for job_id in expected:
        state = states.get(job_id, "missing")
        counts[state] = counts.get(state, 0) + 1
    return ", ".join(f"{n} {state}" for state, n in sorted(counts.items(), key=lambda kv: -kv[1]))
