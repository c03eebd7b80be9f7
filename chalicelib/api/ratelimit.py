"""The per-organization API rate limit: a fixed one-minute window counted in DynamoDB.

Each authenticated request costs one UpdateItem on the item `RATE#{scope}#{minute}` / `RATE`:
`ADD n 1` on the condition that `n` is still under the limit. The write is atomic, so every
API Lambda container shares one count per organization; a refused condition is the 429, and
the `Retry-After` is the time left in the window. The item expires through the table's TTL.

The scope is the caller's organization (the operator, bound to none, has a scope of its own).
A fixed window lets a client spend up to twice the limit across a window boundary; that is the
price of one write per request (a sliding window needs a read or a second item).
If DynamoDB cannot be reached the request is let through (fail open): the limit protects the
service from a noisy tenant, and an outage of the counter must not become an outage of the API.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.auth import Principal
from chalicelib.ddb import is_condition_failure, to_item, values
from chalicelib.observability import logger

WINDOW_S = 60
OPERATOR_SCOPE = "_operator"
# Kept a little past its window (TTL deletion is lazy anyway); the key names the window.
_KEEP_S = 2 * WINDOW_S


def rate_key(scope: str, window: int) -> dict[str, Any]:
    return to_item({"pk": f"RATE#{scope}#{window}", "sk": "RATE"})


class RateLimiter:
    """`limiter(principal)` -> seconds to wait (over the limit) or None (go ahead)."""

    def __init__(self, ddb: Any, table: str, per_minute: int, clock: Callable[[], float] = time.time) -> None:
        self._ddb = ddb
        self._table = table
        self._limit = per_minute
        self._clock = clock

    def __call__(self, principal: Principal) -> float | None:
        scope = principal.org_id or OPERATOR_SCOPE
        now = self._clock()
        window = int(now // WINDOW_S)
        try:
            self._ddb.update_item(
                TableName=self._table,
                Key=rate_key(scope, window),
                UpdateExpression="ADD #n :one SET expires_at = :exp",
                ConditionExpression="attribute_not_exists(#n) OR #n < :limit",
                ExpressionAttributeNames={"#n": "n"},
                ExpressionAttributeValues=values(one=1, limit=self._limit, exp=(window + 1) * WINDOW_S + _KEEP_S),
            )
        except ClientError as err:
            if is_condition_failure(err):
                return max((window + 1) * WINDOW_S - now, 0.001)
            logger.warning("rate limit not checked: DynamoDB refused the update", extra={"error": str(err)[:300]})
        except BotoCoreError as err:
            logger.warning("rate limit not checked: DynamoDB unreachable", extra={"error": str(err)[:300]})
        return None
