"""Two limits enforced in DynamoDB, so every Lambda of every queue sees the same state.

* `AlertRateLimit`: at most one SMS per (organization, user, alert type) per window. One
  conditional write decides, so of any number of concurrent jobs exactly one wins the window.
  The winner keeps it across its own retries; it gives it back when it could not send at all.
* `TokenBucket`: a provider's throughput cap (messages per second), shared by all workers. The
  bucket is one item, updated with optimistic concurrency (a version number): a caller that loses
  the race reads again. A part of the bucket can be kept for urgent work (`reserve`), so a
  critical alert finds a token even while a backlog of info alerts drains at the full rate.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from botocore.exceptions import ClientError

from chalicelib.clock import Clock, iso, parse_iso, utcnow
from chalicelib.ddb import from_item, is_condition_failure, to_item, values


def _part(text: str) -> str:
    """A key segment that cannot contain the separator ('#' -> '%23'), so keys never collide."""
    return quote(text, safe="")


@dataclass(frozen=True)
class Claim:
    """The outcome of `AlertRateLimit.claim`: allowed, or held by `holder` until `until`."""

    allowed: bool
    holder: str | None = None
    until: datetime | None = None


class AlertRateLimit:
    def __init__(self, ddb: Any, table: str, window_s: int, clock: Clock = utcnow) -> None:
        self._ddb = ddb
        self._table = table
        self.window_s = window_s
        self._clock = clock

    @staticmethod
    def key(org_id: str, user_id: str, alert_type: str) -> dict[str, Any]:
        return to_item({"pk": f"SMSLIMIT#{org_id}#{_part(user_id)}#{_part(alert_type)}", "sk": "SMSLIMIT"})

    def claim(self, org_id: str, user_id: str, alert_type: str, job_id: str) -> Claim:
        """Take the window for `job_id` if it is free, expired, or already this job's."""
        if self.window_s <= 0:
            return Claim(True)
        now = self._clock()
        until = now + timedelta(seconds=self.window_s)
        try:
            self._ddb.update_item(
                TableName=self._table,
                Key=self.key(org_id, user_id, alert_type),
                UpdateExpression="SET job_id = :job, window_ends_ms = :until_ms, window_ends = :until, "
                "claimed_at = :now, expires_at = :exp",
                ConditionExpression="attribute_not_exists(pk) OR window_ends_ms <= :now_ms OR job_id = :job",
                ExpressionAttributeValues=values(
                    job=job_id,
                    until_ms=_ms(until),
                    until=iso(until),
                    now=iso(now),
                    now_ms=_ms(now),
                    exp=int(until.timestamp()) + 3600,
                ),
            )
        except ClientError as err:
            if not is_condition_failure(err):
                raise
            held = self._ddb.get_item(
                TableName=self._table, Key=self.key(org_id, user_id, alert_type), ConsistentRead=True
            ).get("Item")
            data = from_item(held) if held else {}
            ends = data.get("window_ends")
            return Claim(False, holder=data.get("job_id"), until=parse_iso(ends) if ends else None)
        return Claim(True)

    def release(self, org_id: str, user_id: str, alert_type: str, job_id: str) -> None:
        """Give the window back (this job sent nothing), if this job still holds it."""
        if self.window_s <= 0:
            return
        try:
            self._ddb.delete_item(
                TableName=self._table,
                Key=self.key(org_id, user_id, alert_type),
                ConditionExpression="job_id = :job",
                ExpressionAttributeValues=values(job=job_id),
            )
        except ClientError as err:
            if not is_condition_failure(err):
                raise


# Optimistic writes lost in a row before a caller is told to come back a little later.
MAX_RACES = 8
# At most this share of a bucket is kept for urgent work.
RESERVE_SHARE = 0.25


def reserve_for(rate_per_s: int) -> int:
    """Tokens non-urgent work leaves in the bucket: a quarter, at least 1, never the whole bucket."""
    return min(rate_per_s - 1, max(1, math.ceil(rate_per_s * RESERVE_SHARE)))


class TokenBucket:
    """A token bucket in one DynamoDB item: `burst` tokens at most, `rate` added per second.

    Lambdas race on the item with a version condition. Within one process, where a batch's records
    run on threads, takers of the same bucket queue on a lock instead: ten threads reading the
    same version would leave nine to retry, and after MAX_RACES defer their SMS for nothing.
    """

    def __init__(self, ddb: Any, table: str, clock: Clock = utcnow) -> None:
        self._ddb = ddb
        self._table = table
        self._clock = clock
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def _lock(self, name: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(name, threading.Lock())

    def take(self, name: str, rate_per_s: float, burst: float, reserve: float = 0.0) -> float | None:
        """Take one token: None when taken, else the seconds to wait before trying again.

        `reserve` tokens are left alone: only callers passing 0 may take the last ones.
        Amounts are stored in thousandths of a token (DynamoDB numbers, no floats).
        """
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("a token bucket needs a positive rate and room for at least one token")
        with self._lock(name):
            return self._take(name, rate_per_s, burst, reserve)

    def _take(self, name: str, rate_per_s: float, burst: float, reserve: float) -> float | None:
        key = to_item({"pk": f"BUCKET#{name}", "sk": "BUCKET"})
        capacity, need = int(burst * 1000), int((1 + reserve) * 1000)
        for _ in range(MAX_RACES):
            now_ms = _ms(self._clock())
            got = self._ddb.get_item(TableName=self._table, Key=key, ConsistentRead=True).get("Item")
            if got:
                data = from_item(got)
                version, last_ms = int(data["version"]), int(data["updated_ms"])
                # Clocks of different Lambdas differ a little: time never runs backwards here.
                elapsed = max(0, now_ms - last_ms)
                tokens = min(capacity, int(data["tokens_milli"]) + int(elapsed * rate_per_s))
                now_ms = max(now_ms, last_ms)
            else:
                version, tokens = 0, capacity
            if tokens < need:
                return (need - tokens) / 1000 / rate_per_s
            try:
                self._ddb.put_item(
                    TableName=self._table,
                    Item={
                        **key,
                        **to_item({"tokens_milli": tokens - 1000, "updated_ms": now_ms, "version": version + 1}),
                    },
                    ConditionExpression="attribute_not_exists(pk) OR version = :v",
                    ExpressionAttributeValues=values(v=version),
                )
            except ClientError as err:
                if not is_condition_failure(err):
                    raise
                continue
            return None
        return 1 / rate_per_s


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)
