"""Bearer tokens: stored as SHA-256 hashes, resolving to an organization and a role.

Tokens are 256 random bits, so a fast hash is enough (no password stretching needed): a stolen
table does not reveal a usable token. A token never appears in a log line or a job record.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

from chalicelib.ddb import from_item, to_item

ROLES = ("member", "admin", "operator")
_RANK = {"member": 0, "admin": 1, "operator": 2}
CACHE_TTL_S = 30.0


@dataclass(frozen=True)
class Principal:
    role: str
    org_id: str | None  # None for the platform operator

    def at_least(self, role: str) -> bool:
        return _RANK[self.role] >= _RANK[role]

    @property
    def is_operator(self) -> bool:
        return self.role == "operator"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def new_token() -> str:
    return "hrld_" + secrets.token_urlsafe(32)


class TokenStore:
    def __init__(self, ddb: Any, table: str) -> None:
        self._ddb = ddb
        self._table = table
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        self._lock = threading.Lock()

    def resolve(self, token: str) -> Principal | None:
        """The token's principal, or None. Cached briefly per container (revocation: <= 30 s)."""
        if not token or len(token) > 256:
            return None
        digest = hash_token(token)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(digest)
            if hit and hit[0] > now:
                return hit[1]
        item = self._ddb.get_item(TableName=self._table, Key=to_item({"pk": f"TOKEN#{digest}", "sk": "TOKEN"})).get(
            "Item"
        )
        principal = None
        if item:
            data = from_item(item)
            principal = Principal(role=data["role"], org_id=data.get("org_id"))
        with self._lock:
            self._cache[digest] = (now + CACHE_TTL_S, principal)
        return principal

    def put(self, token: str, principal: Principal, name: str = "") -> None:
        if principal.role not in ROLES:
            raise ValueError(f"unknown role {principal.role!r}")
        self._ddb.put_item(
            TableName=self._table,
            Item=to_item(
                {
                    "pk": f"TOKEN#{hash_token(token)}",
                    "sk": "TOKEN",
                    "role": principal.role,
                    "org_id": principal.org_id,
                    "name": name,
                }
            ),
        )
