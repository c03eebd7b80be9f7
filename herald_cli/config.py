"""Where the CLI finds its API and token.

Precedence, first match wins:

* API URL: ``--api-url`` > ``HERALD_API_URL`` > ``api_url`` in ``.herald/stack.json``.
* Token: ``--token`` > ``--org ORG`` (that organization's admin token from stack.json) >
  ``HERALD_TOKEN`` > ``operator_token`` in stack.json.

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
                tokens[str(org)] = {
                    str(k): str(v) for k, v in roles.items() if isinstance(v, str)
                }
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

    chosen: str | None
    if token:
        chosen, source = token, "--token"
    elif org:
        if stack is None:
            raise ConfigError(
                "--org picks a token from .herald/stack.json, but none was found"
            )
        roles = stack.tokens.get(org)
        if not roles or not roles.get("admin"):
            known = ", ".join(sorted(stack.tokens)) or "none"
            raise ConfigError(
                f"no admin token for org {org!r} in {stack.path} (orgs: {known})"
            )
        chosen, source = roles["admin"], f"admin token of {org} ({stack.path})"
    elif env.get(ENV_TOKEN):
        chosen, source = env[ENV_TOKEN], ENV_TOKEN
    elif stack is not None and stack.operator_token:
        chosen, source = stack.operator_token, f"operator token ({stack.path})"
    else:
        chosen, source = None, "none"

    return Settings(
        api_url=url.rstrip("/"),
        token=chosen,
        token_source=source,
        stack_path=stack.path if stack else None,
    )


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
