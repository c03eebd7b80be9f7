"""Does an HTTP answer match what the OpenAPI document says about it? (JSON Schema 2020-12)"""

from __future__ import annotations

import json
from typing import Any

import jsonschema_rs


def _resolve(doc: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = doc
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def response_spec(doc: dict[str, Any], method: str, path: str, status: int) -> dict[str, Any] | None:
    responses = doc["paths"][path][method.lower()]["responses"]
    spec = responses.get(str(status)) or responses.get(f"{str(status)[0]}XX") or responses.get("default")
    return None if spec is None else _resolve(doc, spec)


def response_problems(
    doc: dict[str, Any], method: str, path: str, status: int, headers: dict[str, str], body: bytes | str
) -> list[str]:
    """Everything wrong with this answer according to the document (empty when it conforms)."""
    spec = response_spec(doc, method, path, status)
    if spec is None:
        documented = ", ".join(doc["paths"][path][method.lower()]["responses"])
        return [f"{method} {path} answered {status}, which is not documented ({documented})"]
    raw = body.encode() if isinstance(body, str) else body
    content = spec.get("content")
    if not content:
        return [] if not raw else [f"{status} is documented without a body, but one came back"]
    lowered = {k.lower(): v for k, v in headers.items()}
    media = lowered.get("content-type", "").split(";")[0].strip().lower()
    if media not in content:
        return [f"content type {media!r} is not documented for {status} (documented: {', '.join(content)})"]
    problems = [
        f"header {name} is missing"
        for name, header in spec.get("headers", {}).items()
        if header.get("required") and name.lower() not in lowered
    ]
    schema = content[media].get("schema", {})
    try:
        instance = json.loads(raw) if media == "application/json" else raw.decode()
    except ValueError as err:
        return [*problems, f"the body is not {media}: {err}"]
    validator = jsonschema_rs.Draft202012Validator({**schema, "components": doc.get("components", {})})
    problems += [
        f"{'/'.join(map(str, e.instance_path)) or 'body'}: {e.message}" for e in validator.iter_errors(instance)
    ]
    return problems
