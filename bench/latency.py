"""5. API latency: POST /v1/alerts/{id}/notify vs GET /ping, through API Gateway, warm.

Both are routes of the same deployed app behind the same API Gateway and Lambda; `/ping` does
nothing (no token, no AWS call), so the difference is what notify itself costs: the token
check (cached per container), the per-organization rate limit (one UpdateItem), validation, the
job record (PutItem) and the message (SendMessage). Requests alternate (ping, notify, ping, ...)
over one keep-alive connection, after a warm-up, so both see the same machine. Every notify uses
a distinct user id (the SMS rate limit is the worker's business, not the API's, but the jobs are
then all real sends), and must answer 202; every ping 200. The benchmark then waits for the
notify jobs to complete, so the next benchmark does not run beside their SMS.
"""

from __future__ import annotations

import http.client
import json
import time
import uuid
from urllib.parse import urlsplit

from bench import jobs as job_records
from bench.cloud import Stack
from bench.harness import BenchFailure, Figure, check, percentile, say

WARMUP = 20


class Http:
    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        self._host, self._port, self._prefix = parts.hostname or "127.0.0.1", parts.port or 80, parts.path.rstrip("/")
        self._conn = http.client.HTTPConnection(self._host, self._port, timeout=30)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes, float]:
        """(status, body, seconds); one retry on a dropped keep-alive connection (not timed twice)."""
        for attempt in range(2):
            try:
                started = time.perf_counter()
                self._conn.request(method, self._prefix + path, body=body, headers=headers or {})
                response = self._conn.getresponse()
                data = response.read()
                return response.status, data, time.perf_counter() - started
            except (http.client.HTTPException, ConnectionError):
                self._conn.close()
                self._conn = http.client.HTTPConnection(self._host, self._port, timeout=30)
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._conn.close()


def run(stack: Stack, requests: int) -> list[Figure]:
    api = Http(stack.api_url)
    headers = {"Authorization": f"Bearer {stack.token}", "Content-Type": "application/json"}
    tag = uuid.uuid4().hex[:6]
    job_ids: list[str] = []

    def notify(i: int) -> float:
        body = json.dumps(
            {
                "user_id": f"lat-{tag}-{i}",
                "phone_number": f"+1555{i % 10_000_000:07d}",
                "message": "bench latency",
                "alert_type": "latency",
                "severity": "critical",
            }
        ).encode()
        status, data, seconds = api.request("POST", f"/v1/alerts/bench-{tag}/notify", body, headers)
        if status != 202:
            raise BenchFailure(f"latency: notify answered {status}: {data[:300]!r}")
        job_ids.append(json.loads(data)["job_id"])
        return seconds

    def ping() -> float:
        status, data, seconds = api.request("GET", "/ping")
        if status != 200:
            raise BenchFailure(f"latency: /ping answered {status}: {data[:300]!r} (is the stack deployed with it?)")
        return seconds

    try:
        for i in range(WARMUP):
            ping()
            notify(i)
        pings: list[float] = []
        notifies: list[float] = []
        say(f"latency: {requests} x (GET /ping, POST /v1/alerts/{{id}}/notify), alternating, after {WARMUP} warm-ups")
        for i in range(requests):
            pings.append(ping())
            notifies.append(notify(WARMUP + i))
    finally:
        api.close()
    check(len(notifies) == requests, f"latency: {len(notifies)} of {requests} notify requests answered")
    p = {
        name: (percentile(v, 50) * 1000, percentile(v, 99) * 1000)
        for name, v in (("ping", pings), ("notify", notifies))
    }
    say(
        f"latency: notify p50 {p['notify'][0]:.1f} ms p99 {p['notify'][1]:.1f} ms; "
        f"ping p50 {p['ping'][0]:.1f} ms p99 {p['ping'][1]:.1f} ms"
    )

    # Let the SMS jobs finish (checked: each must complete).
    records = job_records.wait_final(
        stack.org_id, job_ids, 180, f"the latency benchmark's {len(job_ids)} notify jobs to finish"
    )
    states = job_records.statuses_of(records)
    not_completed = [j for j in job_ids if states.get(j) != "completed"]
    check(
        not not_completed,
        f"latency: {len(not_completed)} notify jobs did not complete: " + job_records.summary(states, job_ids),
    )
    note = f"{requests} requests each, alternating over one keep-alive connection, warm"
    return [
        Figure("API latency p50: notify vs ping", p["notify"][0], "ms", p["ping"][0], goal="ratio <= 1.3", note=note),
        Figure("API latency p99: notify vs ping", p["notify"][1], "ms", p["ping"][1], goal="ratio <= 1.3"),
    ]
