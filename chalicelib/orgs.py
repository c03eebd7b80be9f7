"""Organizations and their per-org secrets (the webhook signing secret)."""

from __future__ import annotations

import threading
import time
from typing import Any

from chalicelib.clock import iso, utcnow
from chalicelib.ddb import from_item, is_condition_failure, to_item, values
from chalicelib.providers.webhook import generate_secret

SECRET_CACHE_S = 60.0


class OrgStore:
    def __init__(self, ddb: Any, table: str) -> None:
        self._ddb = ddb
        self._table = table
        self._secrets: dict[str, tuple[float, str]] = {}
        self._lock = threading.Lock()

    def put_org(self, org_id: str, name: str) -> None:
        self._ddb.transact_write_items(
            TransactItems=[
                {
                    "Put": {
                        "TableName": self._table,
                        "Item": to_item({"pk": f"ORG#{org_id}", "sk": "ORG", "name": name}),
                    }
                },
                {
                    "Put": {
                        "TableName": self._table,
                        "Item": to_item({"pk": "ORGS", "sk": f"ORG#{org_id}", "org_id": org_id}),
                    }
                },
            ]
        )

    def org_ids(self) -> list[str]:
        ids: list[str] = []
        query: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": values(pk="ORGS"),
        }
        while True:
            response = self._ddb.query(**query)
            ids.extend(from_item(item)["org_id"] for item in response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                return ids
            query["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def exists(self, org_id: str) -> bool:
        key = to_item({"pk": f"ORG#{org_id}", "sk": "ORG"})
        return "Item" in self._ddb.get_item(TableName=self._table, Key=key)

    def webhook_secret(self, org_id: str, *, cached: bool = False) -> str:
        """The org's signing secret, created on first use (the first writer wins)."""
        now = time.monotonic()
        if cached:
            with self._lock:
                hit = self._secrets.get(org_id)
                if hit and hit[0] > now:
                    return hit[1]
        key = to_item({"pk": f"ORG#{org_id}", "sk": "WEBHOOK_SECRET"})
        item = self._ddb.get_item(TableName=self._table, Key=key, ConsistentRead=True).get("Item")
        if item:
            secret = str(from_item(item)["secret"])
        else:
            secret = generate_secret()
            try:
                self._ddb.put_item(
                    TableName=self._table,
                    Item=to_item(
                        {"pk": f"ORG#{org_id}", "sk": "WEBHOOK_SECRET", "secret": secret, "created_at": iso(utcnow())}
                    ),
                    ConditionExpression="attribute_not_exists(pk)",
                )
            except Exception as err:
                if not is_condition_failure(err):
                    raise
                return self.webhook_secret(org_id)
        with self._lock:
            self._secrets[org_id] = (now + SECRET_CACHE_S, secret)
        return secret

    def rotate_webhook_secret(self, org_id: str) -> str:
        secret = generate_secret()
        self._ddb.put_item(
            TableName=self._table,
            Item=to_item(
                {"pk": f"ORG#{org_id}", "sk": "WEBHOOK_SECRET", "secret": secret, "created_at": iso(utcnow())}
            ),
        )
        with self._lock:
            self._secrets.pop(org_id, None)
        return secret
