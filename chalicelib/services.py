"""The composition root: builds the service's objects from settings and AWS clients, once.

Nothing is built at import time; the first call in a container builds what it needs. Tests swap
the whole graph with `use(...)` or reset it with `reset()`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chalicelib import aws
from chalicelib.auth import TokenStore
from chalicelib.config import Settings, settings
from chalicelib.jobs.ledger import DeadLetterLedger
from chalicelib.jobs.queue import JobQueue
from chalicelib.jobs.service import JobService
from chalicelib.jobs.store import JobStore, Retention
from chalicelib.jobs.worker import Worker
from chalicelib.orgs import OrgStore

if TYPE_CHECKING:
    from chalicelib.api.ratelimit import RateLimiter
    from chalicelib.ops.dlq import QueueOps
    from chalicelib.ops.redrive import RedriveService


@dataclass
class Services:
    settings: Settings
    store: JobStore
    queue: JobQueue
    jobs: JobService
    tokens: TokenStore
    orgs: OrgStore
    ledger: DeadLetterLedger
    ddb: Any
    sqs: Any

    @functools.cached_property
    def worker(self) -> Worker:
        from chalicelib.handlers import build_handlers

        return Worker(self.store, self.queue, self.ledger, build_handlers(self), self.settings)

    @functools.cached_property
    def rate_limiter(self) -> RateLimiter:
        from chalicelib.api.ratelimit import RateLimiter

        return RateLimiter(self.ddb, self.settings.table_name, self.settings.api_rate_per_minute)

    @functools.cached_property
    def queue_ops(self) -> QueueOps:
        from chalicelib.ops.dlq import QueueOps

        return QueueOps(self.sqs, self.queue, self.ledger, self.settings, lambda: aws.client("cloudwatch"))

    @functools.cached_property
    def redrives(self) -> RedriveService:
        from chalicelib.ops import redrive
        from chalicelib.ops.records import RedriveStore

        return redrive.RedriveService(
            RedriveStore(self.ddb, self.settings.table_name),
            self.store,
            self.queue,
            self.ledger,
            self.queue_ops,
            self.sqs,
            redrive.lambda_invoker(lambda: aws.client("lambda"), redrive.function_name(self.settings.stage)),
        )


def build(config: Settings | None = None) -> Services:
    config = config or settings()
    ddb = aws.client("dynamodb")
    sqs = aws.client("sqs")
    store = JobStore(
        ddb,
        config.table_name,
        retention=Retention(config.completed_retention_days, config.dead_retention_days, config.alert_retention_days),
    )
    queue = JobQueue(sqs, config)
    return Services(
        settings=config,
        store=store,
        queue=queue,
        jobs=JobService(store, queue),
        tokens=TokenStore(ddb, config.table_name),
        orgs=OrgStore(ddb, config.table_name),
        ledger=DeadLetterLedger(ddb, config.table_name),
        ddb=ddb,
        sqs=sqs,
    )


_current: Services | None = None


def services() -> Services:
    global _current
    if _current is None:
        _current = build()
    return _current


def use(replacement: Services | None) -> None:
    global _current
    _current = replacement


def reset() -> None:
    use(None)
    aws.reset()
    settings.cache_clear()
