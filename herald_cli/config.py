"""Where the CLI finds its API and token.

Precedence, first match wins:

* API URL: ``--api-url`` > ``HERALD_API_URL`` > ``api_url`` in ``.herald/stack.json``.
* Token: ``--token`` > ``--org ORG``'s admin token from stack.json (when it lists one) >
  ``HERALD_TOKEN`` > ``operator_token`` in stack.json. ``--org`` also names the organization
  the commands act on (``org_id``), which is what the operator token needs.

stack.json is the file ``make up`` leaves in the project root; it is looked up in the current
directory and then in each parent, unless ``--stack FILE`` names one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

STACK_RELATIVE = Path(".herald") / "stack.json"
ENV_API_URL = "HERALD_API_URL"
ENV_TOKEN = "HERALD_TOKEN"


class ConfigError(Exception):
    """The CLI cannot tell which API to call or with which token."""


@dataclass(frozen=True)
class Stack:
    """The parts of ``.herald/stack.json`` the CLI uses."""

    path: Path
    api_url: str | None = None
    operator_token: str | None = None
    tokens: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Settings:
    api_url: str
    token: str | None
    token_source: str
    stack_path: Path | None


def find_stack_file(start: Path) -> Path | None:
    """The nearest ``.herald/stack.json`` in ``start`` or one of its parents."""
    start = start.resolve()
    for directory in (start, *start.parents):
        candidate = directory / STACK_RELATIVE
        if candidate.is_file():
            return candidate
    return None


def load_stack(path: Path) -> Stack:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a JSON object")
    tokens: dict[str, dict[str, str]] = {}
    raw_tokens = raw.get("tokens")
    if isinstance(raw_tokens, dict):
        for org, roles in raw_tokens.items():
            if isinstance(roles, dict):
                tokens[str(org)] = {str(k): str(v) for k, v in roles.items() if isinstance(v, str)}
    return Stack(
        path=path,
        api_url=_str_or_none(raw.get("api_url")),
        operator_token=_str_or_none(raw.get("operator_token")),
        tokens=tokens,
    )


def resolve_settings(
    *,
    api_url: str | None,
    token: str | None,
    org: str | None,
    stack_file: str | None,
    env: Mapping[str, str],
    cwd: Path,
) -> Settings:
    """Combine flags, environment and stack.json into the settings of one run."""
    stack: Stack | None = None
    if stack_file:
        path = Path(stack_file)
        if not path.is_absolute():
            path = cwd / path
        if not path.is_file():
            raise ConfigError(f"--stack: no such file: {path}")
        stack = load_stack(path)
    else:
        found = find_stack_file(cwd)
        if found is not None:
            stack = load_stack(found)

    url = api_url or env.get(ENV_API_URL) or (stack.api_url if stack else None)
    if not url:
        raise ConfigError(
            "no API URL: pass --api-url, set HERALD_API_URL, or run inside a project "
            "whose .herald/stack.json was written by `make up`"
        )

    admin = stack.tokens.get(org, {}).get("admin") if org and stack else None
    chosen: str | None
    if token:
        chosen, source = token, "--token"
    elif admin:
        chosen, source = admin, f"the admin token of {org} in {stack.path if stack else ''}"
    elif env.get(ENV_TOKEN):
        chosen, source = env[ENV_TOKEN], ENV_TOKEN
    elif stack is not None and stack.operator_token:
        chosen, source = stack.operator_token, f"the operator token in {stack.path}"
    else:
        chosen, source = None, "nowhere"
    if org and chosen is None:
        known = ", ".join(sorted(stack.tokens)) if stack else ""
        where = (
            f"{stack.path} has no admin token for it (orgs: {known or 'none'})"
            if stack
            else ("no .herald/stack.json was found")
        )
        raise ConfigError(f"no token for org {org!r}: {where}; pass --token or set HERALD_TOKEN")

    return Settings(
        api_url=url.rstrip("/"),
        token=chosen,
        token_source=source,
        stack_path=stack.path if stack else None,
    )


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
