"""Recipients: who gets digests and quiet hours, per organization.

One item per recipient: pk `ORG#{org}`, sk `RECIPIENT#{user_id}`, with `user_id`, `org_id`,
`email`, `phone_number` (absent when not given), `timezone` (IANA name), `digests` (a list of
kinds), `quiet_hours` (a map `{start, end}`, absent when not given), `created_at`,
`updated_at`. The SMS quiet-hours check (`alerts/quiet_hours.py`) reads this same item by these
attribute names: keep them.

A recipient is replaced whole (PUT semantics): fields left out of a replacement are removed, and
`created_at` survives. Listing and the digest fan-out read the org's partition in `user_id`
order (the sort key's), which is what lets a long fan-out resume after the last user it did.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from chalicelib.clock import Clock, iso, utcnow
from chalicelib.ddb import decode_cursor, encode_cursor, from_item, to_item, values

PREFIX = "RECIPIENT#"
MAX_PAGE = 100


class BadCursor(ValueError):
    pass


def org_pk(org_id: str) -> str:
    return f"ORG#{org_id}"


def recipient_sk(user_id: str) -> str:
    return f"{PREFIX}{user_id}"


@dataclass(frozen=True)
class Recipient:
    """The contract's recipient. Satisfies `digests.schedule.RecipientLike`."""

    user_id: str
    email: str
    timezone: str
    digests: tuple[str, ...] = ()
    phone_number: str | None = None
    quiet_hours: dict[str, str] | None = None
    created_at: str | None = None
    updated_at: str | None = None

    def to_api(self, org_id: str) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "org_id": org_id,
            "email": self.email,
            "phone_number": self.phone_number,
            "timezone": self.timezone,
            "digests": list(self.digests),
            "quiet_hours": dict(self.quiet_hours) if self.quiet_hours else None,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


def _from_item(item: dict[str, Any]) -> Recipient:
    data = from_item(item)
    quiet = data.get("quiet_hours")
    digests = data.get("digests") or []
    return Recipient(
        user_id=str(data["user_id"]),
        email=str(data.get("email", "")),
        timezone=str(data.get("timezone", "")),
        digests=tuple(str(kind) for kind in digests),
        phone_number=data.get("phone_number"),
        quiet_hours={"start": str(quiet["start"]), "end": str(quiet["end"])} if isinstance(quiet, dict) else None,
        created_at=data.get("created_at"),
        updated_at=data.get("updated_at"),
    )


class RecipientStore:
    def __init__(self, ddb: Any, table: str, clock: Clock = utcnow) -> None:
        self._ddb = ddb
        self._table = table
        self._clock = clock

    def _key(self, org_id: str, user_id: str) -> dict[str, Any]:
        return to_item({"pk": org_pk(org_id), "sk": recipient_sk(user_id)})

    def put(self, org_id: str, recipient: Recipient) -> tuple[Recipient, bool]:
        """Create or replace; `(stored, created)`. One UpdateItem: `created_at` is kept on a
        replacement, and optional fields the replacement leaves out are removed."""
        now = iso(self._clock())
        names = {
            "#user": "user_id",
            "#org": "org_id",
            "#email": "email",
            "#tz": "timezone",
            "#digests": "digests",
            "#created": "created_at",
            "#updated": "updated_at",
            "#phone": "phone_number",
            "#quiet": "quiet_hours",
        }
        sets = [
            "#user = :user",
            "#org = :org",
            "#email = :email",
            "#tz = :tz",
            "#digests = :digests",
            "#updated = :now",
            "#created = if_not_exists(#created, :now)",
        ]
        removes: list[str] = []
        vals: dict[str, Any] = {
            "user": recipient.user_id,
            "org": org_id,
            "email": recipient.email,
            "tz": recipient.timezone,
            "digests": list(recipient.digests),
            "now": now,
        }
        if recipient.phone_number is None:
            removes.append("#phone")
        else:
            sets.append("#phone = :phone")
            vals["phone"] = recipient.phone_number
        if recipient.quiet_hours is None:
            removes.append("#quiet")
        else:
            sets.append("#quiet = :quiet")
            vals["quiet"] = dict(recipient.quiet_hours)
        update = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
        response = self._ddb.update_item(
            TableName=self._table,
            Key=self._key(org_id, recipient.user_id),
            UpdateExpression=update,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values(**vals),
            ReturnValues="ALL_OLD",
        )
        old = response.get("Attributes")
        created_at = str(from_item(old)["created_at"]) if old and "created_at" in old else now
        stored = Recipient(
            user_id=recipient.user_id,
            email=recipient.email,
            timezone=recipient.timezone,
            digests=tuple(recipient.digests),
            phone_number=recipient.phone_number,
            quiet_hours=recipient.quiet_hours,
            created_at=created_at,
            updated_at=now,
        )
        return stored, not old

    def get(self, org_id: str, user_id: str) -> Recipient | None:
        item = self._ddb.get_item(TableName=self._table, Key=self._key(org_id, user_id), ConsistentRead=True).get(
            "Item"
        )
        return _from_item(item) if item else None

    def delete(self, org_id: str, user_id: str) -> Recipient | None:
        """Remove the recipient; the removed record, or None when there was none."""
        response = self._ddb.delete_item(TableName=self._table, Key=self._key(org_id, user_id), ReturnValues="ALL_OLD")
        old = response.get("Attributes")
        return _from_item(old) if old else None

    def _query(self, org_id: str, limit: int, start: dict[str, Any] | None) -> dict[str, Any]:
        query: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": values(pk=org_pk(org_id), prefix=PREFIX),
            "Limit": limit,
        }
        if start:
            query["ExclusiveStartKey"] = start
        return dict(self._ddb.query(**query))

    def list(self, org_id: str, *, limit: int = 20, cursor: str | None = None) -> tuple[list[Recipient], str | None]:
        """One page in `user_id` order, and the cursor of the next (None at the end)."""
        start: dict[str, Any] | None = None
        if cursor:
            try:
                start = decode_cursor(cursor)
            except ValueError:
                raise BadCursor(cursor) from None
            sk = start.get("sk", {}).get("S", "")
            if set(start) != {"pk", "sk"} or start["pk"].get("S") != org_pk(org_id) or not sk.startswith(PREFIX):
                raise BadCursor(cursor)
        response = self._query(org_id, max(1, min(limit, MAX_PAGE)), start)
        items = [_from_item(item) for item in response.get("Items", [])]
        last = response.get("LastEvaluatedKey")
        return items, encode_cursor({"pk": last["pk"], "sk": last["sk"]}) if last else None

    def iter_after(self, org_id: str, after_user_id: str | None = None, page_size: int = 500) -> Iterator[Recipient]:
        """Every recipient whose `user_id` sorts after `after_user_id` (all when None), in order."""
        start = self._key(org_id, after_user_id) if after_user_id is not None else None
        while True:
            response = self._query(org_id, page_size, start)
            for item in response.get("Items", []):
                yield _from_item(item)
            start = response.get("LastEvaluatedKey")
            if not start:
                return

    def put_many(self, org_id: str, recipients: Sequence[Recipient]) -> None:
        """Seed recipients in bulk (BatchWriteItem, 25 a call): tests and benchmarks only; the API
        uses `put`."""
        now = iso(self._clock())
        items = [
            to_item(
                {
                    "pk": org_pk(org_id),
                    "sk": recipient_sk(r.user_id),
                    "user_id": r.user_id,
                    "org_id": org_id,
                    "email": r.email,
                    "timezone": r.timezone,
                    "digests": list(r.digests),
                    "phone_number": r.phone_number,
                    "quiet_hours": r.quiet_hours,
                    "created_at": now,
                    "updated_at": now,
                }
            )
            for r in recipients
        ]
        for begin in range(0, len(items), 25):
            request: dict[str, Any] = {
                self._table: [{"PutRequest": {"Item": item}} for item in items[begin : begin + 25]]
            }
            while request:
                request = self._ddb.batch_write_item(RequestItems=request).get("UnprocessedItems") or {}
