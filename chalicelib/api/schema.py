"""A small declarative validator for request bodies: every problem reported at once, per field.

Accepts any JSON value without raising anything but ValidationError: wrong types, huge strings,
null bytes and deep nesting all come back as clear `{field, problem}` details.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from chalicelib.errors import FieldProblem, ValidationError

_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "object": (dict,),
    "array": (list,),
    "boolean": (bool,),
}


@dataclass(frozen=True)
class F:
    """One field: its JSON type, whether it is required, and its bounds."""

    name: str
    kind: str = "string"  # string | integer | object | array | boolean | any
    required: bool = False
    minimum: int | None = None
    maximum: int | None = None
    choices: Sequence[str] | None = None
    pattern: str | None = None
    check: Callable[[Any, str], list[FieldProblem]] | None = None

    def problems(self, value: Any, path: str) -> list[FieldProblem]:
        if self.kind != "any":
            ok = isinstance(value, _TYPES[self.kind]) and not (self.kind == "integer" and isinstance(value, bool))
            if not ok:
                return [FieldProblem(path, f"must be {'an' if self.kind[0] in 'aeiou' else 'a'} {self.kind}")]
        if self.kind == "string":
            if self.minimum is not None and len(value) < self.minimum:
                return [FieldProblem(path, f"must be at least {self.minimum} characters long")]
            if self.maximum is not None and len(value) > self.maximum:
                return [FieldProblem(path, f"must be at most {self.maximum} characters long")]
            if "\x00" in value:
                return [FieldProblem(path, "must not contain NUL characters")]
            if self.choices is not None and value not in self.choices:
                return [FieldProblem(path, f"must be one of: {', '.join(self.choices)}")]
            if self.pattern is not None and not re.fullmatch(self.pattern, value):
                return [FieldProblem(path, f"must match {self.pattern}")]
        if self.kind == "integer":
            if self.minimum is not None and value < self.minimum:
                return [FieldProblem(path, f"must be at least {self.minimum}")]
            if self.maximum is not None and value > self.maximum:
                return [FieldProblem(path, f"must be at most {self.maximum}")]
        return self.check(value, path) if self.check is not None else []


def check_object(body: Any, fields: Sequence[F], prefix: str = "", allow_unknown: bool = False) -> list[FieldProblem]:
    if not isinstance(body, dict):
        return [FieldProblem(prefix or "body", "must be a JSON object")]
    problems: list[FieldProblem] = []
    known = {f.name for f in fields}
    for field in fields:
        path = f"{prefix}.{field.name}" if prefix else field.name
        if field.name not in body or body[field.name] is None:
            if field.required:
                problems.append(FieldProblem(path, "is required"))
            continue
        problems.extend(field.problems(body[field.name], path))
    if not allow_unknown:
        for name in body:
            if name not in known:
                shown = name if len(name) <= 64 else name[:61] + "..."
                problems.append(FieldProblem(f"{prefix}.{shown}" if prefix else shown, "is not a known field"))
    return problems


def validate(body: Any, fields: Sequence[F], allow_unknown: bool = False) -> dict[str, Any]:
    """The body when valid, else ValidationError with every problem."""
    problems = check_object(body, fields, allow_unknown=allow_unknown)
    if problems:
        raise ValidationError(problems[:50])
    return dict(body)


def nested(fields: Sequence[F], allow_unknown: bool = False) -> Callable[[Any, str], list[FieldProblem]]:
    """A `check` for an object-valued field, validating its members."""
    return lambda value, path: check_object(value, fields, prefix=path, allow_unknown=allow_unknown)


def query_int(query: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    if not re.fullmatch(r"\d{1,9}", raw) or not low <= int(raw) <= high:
        raise ValidationError([FieldProblem(name, f"must be an integer from {low} to {high}")])
    return int(raw)
