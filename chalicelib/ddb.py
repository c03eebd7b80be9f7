"""Small helpers over the low-level DynamoDB client: (de)serialization and conditional writes."""

from __future__ import annotations

import base64
import json
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

_SER = TypeSerializer()
_DES = TypeDeserializer()


def to_item(values: dict[str, Any]) -> dict[str, Any]:
    return {key: _SER.serialize(value) for key, value in values.items() if value is not None}


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    return {key: _DES.deserialize(value) for key, value in item.items()}


def values(**kwargs: Any) -> dict[str, Any]:
    """ExpressionAttributeValues from keyword arguments: values(s="x") -> {":s": {"S": "x"}}."""
    return {f":{key}": _SER.serialize(value) for key, value in kwargs.items()}


def is_condition_failure(err: Exception) -> bool:
    code = getattr(err, "response", {}).get("Error", {}).get("Code", "")
    return code in ("ConditionalCheckFailedException", "TransactionCanceledException")


def cancellation_reasons(err: Exception) -> list[str]:
    reasons = getattr(err, "response", {}).get("CancellationReasons") or []
    return [reason.get("Code", "None") for reason in reasons]


def encode_cursor(key: dict[str, Any]) -> str:
    raw = json.dumps(from_item(key), separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> dict[str, Any]:
    """Raises ValueError for anything that is not a cursor we made."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
    except (ValueError, TypeError):
        raise ValueError("not a cursor") from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise ValueError("not a cursor")
    return to_item(data)
