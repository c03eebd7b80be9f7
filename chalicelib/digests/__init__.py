"""Email digests: when they are due (schedule), what they say (content), how they fan out (fanout).

The pure core only: the scheduler Lambda, the job store query and the email sender are wired
elsewhere and pass clocks, records and clients in.
"""

from chalicelib.digests.content import DigestSummary, render, summarize
from chalicelib.digests.fanout import FailedEntry, FanoutReport, chunk_for_invocations, send_in_batches
from chalicelib.digests.schedule import (
    DEFAULT_TIMES,
    KINDS,
    SCHEDULE_EXPRESSION,
    TICK_MINUTES,
    DigestTime,
    DigestTimes,
    Kind,
    digest_times,
    due_recipients,
    fire_at,
    floor_to_tick,
    is_due,
    is_valid_timezone,
    period_id,
    period_window,
)

__all__ = [
    "DEFAULT_TIMES",
    "KINDS",
    "SCHEDULE_EXPRESSION",
    "TICK_MINUTES",
    "DigestSummary",
    "DigestTime",
    "DigestTimes",
    "FailedEntry",
    "FanoutReport",
    "Kind",
    "chunk_for_invocations",
    "digest_times",
    "due_recipients",
    "fire_at",
    "floor_to_tick",
    "is_due",
    "is_valid_timezone",
    "period_id",
    "period_window",
    "render",
    "send_in_batches",
    "summarize",
]
