"""GET /health: can this deployment reach its queues and its table? 503 when it cannot.

And GET /ping: a no-op (the baseline of the API latency benchmark).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from chalice.app import Response

from chalicelib.api.http import json_response
from chalicelib.config import PRIORITIES
from chalicelib.services import Services


def ping_response() -> Response:
    """GET /ping: no token, no AWS call, nothing (the latency benchmark's baseline)."""
    return json_response(200, {"ok": True})


def check(svc: Services) -> tuple[int, dict[str, Any]]:
    def table() -> None:
        svc.ddb.describe_table(TableName=svc.settings.table_name)

    def queue(name: str) -> None:
        svc.sqs.get_queue_attributes(QueueUrl=svc.queue.url_of(name), AttributeNames=["QueueArn"])

    probes = {"table": table}
    for priority in PRIORITIES:
        for name in (svc.settings.queue_name(priority), svc.settings.dlq_name(priority)):
            probes[f"queue:{name}"] = lambda name=name: queue(name)  # type: ignore[misc]

    def run(item: tuple[str, Any]) -> tuple[str, str]:
        key, probe = item
        try:
            probe()
        except Exception as err:  # any failure is the answer, not an error of ours
            return key, f"error: {type(err).__name__}"
        return key, "ok"

    with ThreadPoolExecutor(max_workers=len(probes)) as pool:
        checks = dict(pool.map(run, probes.items()))
    healthy = all(v == "ok" for v in checks.values())
    return (200 if healthy else 503), {"status": "ok" if healthy else "degraded", "checks": checks}
