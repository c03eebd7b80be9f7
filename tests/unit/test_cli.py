"""The ``herald`` CLI without a network: a fake transport stands in for the API.

The unit suite runs with sockets disabled; every test here injects ``FakeTransport``.
"""

from __future__ import annotations

import argparse
import io
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from herald_cli.client import HttpResponse, TransportError, UrllibTransport
from herald_cli.config import ConfigError, find_stack_file, resolve_settings
from herald_cli.main import build_parser, main
from herald_cli.render import (
    ProgressReporter,
    format_age,
    format_table,
    format_time,
    progress_bar,
)

API = "http://127.0.0.1:4566/_aws/execute-api/abc123/local"
BASE_PATH = urllib.parse.urlsplit(API).path
QUEUES = {
    "items": [
        {
            "name": "herald-local-jobs",
            "visible": 12,
            "in_flight": 3,
            "delayed": 0,
            "dlq_name": "herald-local-jobs-dlq",
            "dlq_depth": 4,
            "oldest_message_age_s": 125,
        },
        {
            "name": "herald-local-digests",
            "visible": 0,
            "in_flight": 0,
            "delayed": 1,
            "dlq_name": "herald-local-digests-dlq",
            "dlq_depth": 0,
            "oldest_message_age_s": None,
        },
    ],
    "next_cursor": None,
}


def job(job_id: str, status: str = "dead", **extra: Any) -> dict[str, Any]:
    record = {
        "job_id": job_id,
        "org_id": "acme",
        "type": "sms",
        "status": status,
        "priority": "normal",
        "attempts": 5,
        "max_attempts": 5,
        "created_at": "2025-01-15T09:10:00.250Z",
        "run_at": "2025-01-15T09:10:00.250Z",
        "started_at": None,
        "finished_at": None,
        "result": None,
        "error": {
            "code": "provider_timeout",
            "message": "no answer",
            "retryable": True,
        },
    }
    record.update(extra)
    return record


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, str]
    headers: Mapping[str, str]
    body: Any


Reply = tuple[int, Any] | Exception


@dataclass
class FakeTransport:
    """Answers by (method, path below the API base); a list of replies is played in order."""

    routes: dict[tuple[str, str], Reply | list[Reply]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)

    def __call__(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None,
        timeout: float,
    ) -> HttpResponse:
        parts = urllib.parse.urlsplit(url)
        assert url.startswith(API), url
        path = parts.path[len(BASE_PATH) :]
        query = dict(urllib.parse.parse_qsl(parts.query))
        self.calls.append(Call(method, path, query, headers, json.loads(body) if body else None))
        reply = self.routes.get((method, path))
        if reply is None:
            return HttpResponse(404, json.dumps(error_body("not_found", "no route")).encode())
        if isinstance(reply, list):
            reply = reply.pop(0) if len(reply) > 1 else reply[0]
        if isinstance(reply, Exception):
            raise reply
        status, payload = reply
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        return HttpResponse(status, raw)


class TtyStringIO(io.StringIO):
    def isatty(self) -> bool:
        return True


@dataclass
class Run:
    code: int
    out: str
    err: str
    transport: FakeTransport
    sleeps: list[float]


def run(
    argv: list[str],
    routes: dict[tuple[str, str], Reply | list[Reply]] | None = None,
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    tty: bool = False,
    with_url: bool = True,
) -> Run:
    transport = FakeTransport(routes or {})
    out = io.StringIO()
    err: io.StringIO = TtyStringIO() if tty else io.StringIO()
    sleeps: list[float] = []
    ticks = iter(range(10_000))
    base_env = {"HERALD_API_URL": API, "HERALD_TOKEN": "tok-env"} if with_url else {}
    code = main(
        argv,
        transport=transport,
        env={**base_env, **(env or {})},
        cwd=cwd or Path("/nonexistent-herald-test-dir"),
        stdout=out,
        stderr=err,
        sleep=sleeps.append,
        clock=lambda: float(next(ticks)),
    )
    return Run(code, out.getvalue(), err.getvalue(), transport, sleeps)


def write_stack(root: Path, **overrides: Any) -> Path:
    stack = {
        "api_url": "http://stack.test/api",
        "dashboard_url": "http://stack.test/api/admin",
        "aws_endpoint": "http://127.0.0.1:4566",
        "tokens": {
            "acme": {"member": "acme-member", "admin": "acme-admin"},
            "globex": {"member": "globex-member", "admin": "globex-admin"},
        },
        "operator_token": "op-token",
    }
    stack.update(overrides)
    path = root / ".herald" / "stack.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(stack))
    return path


# --------------------------------------------------------------------------- argument parsing


def test_help_has_examples_configuration_and_exit_codes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    for expected in (
        "examples:",
        "herald dlq redrive",
        "HERALD_API_URL",
        "exit codes:",
        "3 cannot reach",
    ):
        assert expected in text


def _subparsers(
    parser: argparse.ArgumentParser,
) -> list[tuple[list[str], argparse.ArgumentParser]]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.append(([name], sub))
                found.extend(([name, *path], leaf) for path, leaf in _subparsers(sub))
    return found


def test_every_command_and_option_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    commands = _subparsers(parser)
    assert {" ".join(path) for path, _ in commands} >= {
        "status",
        "jobs list",
        "jobs show",
        "jobs cancel",
        "dlq list",
        "dlq peek",
        "dlq redrive",
        "digests run",
    }
    for path, sub in [([], parser), *commands]:
        for action in sub._actions:
            assert action.help, f"herald {' '.join(path)}: {action.dest} has no help"
        assert main([*path, "--help"]) == 0
    capsys.readouterr()


@pytest.mark.parametrize(
    "argv",
    [
        ["--json", "--token", "t", "jobs", "list"],
        ["jobs", "list", "--json", "--token", "t"],
        ["--token", "other", "jobs", "list", "--json", "--token", "t"],
    ],
)
def test_connection_options_work_before_or_after_the_command(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert args.json is True
    assert args.token == "t"
    assert args.timeout == 30.0


def test_org_after_the_command_wins_over_org_before_it() -> None:
    args = build_parser().parse_args(["--org", "globex", "dlq", "peek", "q", "--org", "acme"])
    assert args.org == "acme"
    assert build_parser().parse_args(["--org", "globex", "dlq", "peek", "q"]).org == "globex"


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["jobs"],
        ["jobs", "list", "--limit", "0"],
        ["jobs", "list", "--limit", "101"],
        ["jobs", "list", "--status", "lost"],
        ["jobs", "show"],
        ["dlq", "redrive"],
        ["dlq", "redrive", "q", "--max-per-second", "-1"],
        ["digests", "run", "yearly"],
        ["status", "--timeout", "0"],
        ["frobnicate"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    result = run(argv)
    assert result.code == 2
    assert "usage: herald" in capsys.readouterr().err
    assert result.transport.calls == []


# --------------------------------------------------------------------------- configuration


def test_stack_json_is_found_in_a_parent_directory(tmp_path: Path) -> None:
    stack = write_stack(tmp_path)
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    assert find_stack_file(deep) == stack
    lonely = tmp_path / "no-stack-here"
    lonely.mkdir()
    stack.unlink()
    assert find_stack_file(lonely) is None


def test_stack_json_gives_url_and_operator_token_by_default(tmp_path: Path) -> None:
    write_stack(tmp_path)
    settings = resolve_settings(api_url=None, token=None, org=None, stack_file=None, env={}, cwd=tmp_path)
    assert settings.api_url == "http://stack.test/api"
    assert settings.token == "op-token"
    assert settings.stack_path == tmp_path / ".herald" / "stack.json"


def test_env_overrides_stack_and_flags_override_env(tmp_path: Path) -> None:
    write_stack(tmp_path)
    env = {"HERALD_API_URL": "http://env.test/", "HERALD_TOKEN": "env-token"}
    from_env = resolve_settings(api_url=None, token=None, org=None, stack_file=None, env=env, cwd=tmp_path)
    assert (from_env.api_url, from_env.token) == ("http://env.test", "env-token")
    from_flags = resolve_settings(
        api_url="http://flag.test",
        token="flag-token",
        org=None,
        stack_file=None,
        env=env,
        cwd=tmp_path,
    )
    assert (from_flags.api_url, from_flags.token) == ("http://flag.test", "flag-token")


def test_org_flag_picks_that_orgs_admin_token(tmp_path: Path) -> None:
    write_stack(tmp_path)
    settings = resolve_settings(
        api_url=None,
        token=None,
        org="globex",
        stack_file=None,
        env={"HERALD_TOKEN": "env"},
        cwd=tmp_path,
    )
    assert settings.token == "globex-admin"
    explicit = resolve_settings(api_url=None, token="flag", org="globex", stack_file=None, env={}, cwd=tmp_path)
    assert explicit.token == "flag"


def test_org_without_an_admin_token_keeps_the_operator_token(tmp_path: Path) -> None:
    # GIVEN a stack.json that lists no token for initech
    write_stack(tmp_path)
    # WHEN acting on initech THEN the operator token is used (the command sends org_id=initech)
    settings = resolve_settings(api_url=None, token=None, org="initech", stack_file=None, env={}, cwd=tmp_path)
    assert settings.token == "op-token"


def test_org_with_no_token_at_all_names_the_known_orgs(tmp_path: Path) -> None:
    write_stack(tmp_path, operator_token=None)
    with pytest.raises(ConfigError, match=r"no token for org 'initech'.*no admin token for it \(orgs: acme, globex\)"):
        resolve_settings(api_url=None, token=None, org="initech", stack_file=None, env={}, cwd=tmp_path)


def test_explicit_stack_file(tmp_path: Path) -> None:
    path = write_stack(tmp_path / "elsewhere", api_url="http://other.test")
    settings = resolve_settings(api_url=None, token=None, org="acme", stack_file=str(path), env={}, cwd=tmp_path)
    assert (settings.api_url, settings.token) == ("http://other.test", "acme-admin")


@pytest.mark.parametrize(
    ("argv", "setup", "message"),
    [
        (["status"], None, "no API URL"),
        (["--api-url", API, "--org", "acme", "status"], None, "no token for org 'acme': no .herald/stack.json"),
        (["--stack", "missing.json", "status"], None, "no such file"),
        (["status"], "not json", "is not valid JSON"),
    ],
)
def test_configuration_errors_exit_2(tmp_path: Path, argv: list[str], setup: str | None, message: str) -> None:
    if setup is not None:
        (tmp_path / ".herald").mkdir()
        (tmp_path / ".herald" / "stack.json").write_text(setup)
    result = run(argv, cwd=tmp_path, with_url=False)
    assert result.code == 2
    assert result.err.startswith("error: ") and message in result.err
    assert result.transport.calls == []


def test_missing_token_exits_2_before_calling_a_protected_route(tmp_path: Path) -> None:
    result = run(["jobs", "list"], cwd=tmp_path, with_url=False, env={"HERALD_API_URL": API})
    assert result.code == 2
    assert "error: no token" in result.err


def test_cli_uses_stack_json_of_the_working_directory(tmp_path: Path) -> None:
    write_stack(tmp_path, api_url=API)
    result = run(
        ["--org", "acme", "dlq", "list"],
        {("GET", "/v1/admin/queues"): (200, QUEUES)},
        cwd=tmp_path,
        with_url=False,
    )
    assert result.code == 0
    assert result.transport.calls[0].headers["Authorization"] == "Bearer acme-admin"


# --------------------------------------------------------------------------- rendering


def test_format_table_pads_columns_and_right_aligns_numbers() -> None:
    table = format_table(["NAME", "N"], [["alpha", "1"], ["b", "100"]], right=(1,))
    assert table.splitlines() == ["NAME     N", "alpha    1", "b      100"]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "-"),
        (-1, "-"),
        (0, "0s"),
        (59.9, "59s"),
        (200, "3m 20s"),
        (7500, "2h 05m"),
        (270000, "3d 03h"),
    ],
)
def test_format_age(seconds: float | None, text: str) -> None:
    assert format_age(seconds) == text


def test_format_time_drops_milliseconds() -> None:
    assert format_time("2025-01-15T09:10:00.250Z") == "2025-01-15 09:10:00Z"
    assert format_time(None) == "-"


@pytest.mark.parametrize(
    ("done", "total", "bar"),
    [
        (0, 500, "[----------] 0/500   0%"),
        (250, 500, "[#####-----] 250/500  50%"),
        (499, 500, "[#########-] 499/500  99%"),
        (500, 500, "[##########] 500/500 100%"),
        (0, 0, "[##########] 0/0 100%"),
        (7, None, "[----------] 7/?"),
    ],
)
def test_progress_bar(done: int, total: int | None, bar: str) -> None:
    assert progress_bar(done, total, width=10) == bar


def test_progress_on_a_tty_redraws_one_line() -> None:
    stream = io.StringIO()
    now = [0.0]
    reporter = ProgressReporter(stream, is_tty=True, clock=lambda: now[0], width=10)
    reporter.update({"status": "running", "moved": 0, "to_move": 500})
    now[0] = 10.0
    reporter.update({"status": "running", "moved": 250, "to_move": 500})
    now[0] = 20.0
    reporter.finish({"status": "completed", "moved": 500, "to_move": 500})
    text = stream.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n")
    frames = text.split("\r")[1:]
    assert frames[0].startswith("[----------] 0/500   0%")
    assert frames[1].startswith("[#####-----] 250/500  50%  25.0 msg/s  ETA 10s  running")
    assert frames[2].startswith("[##########] 500/500 100%  25.0 msg/s  completed")


def test_progress_without_a_tty_prints_plain_lines_at_most_every_interval() -> None:
    stream = io.StringIO()
    now = [0.0]
    reporter = ProgressReporter(stream, is_tty=False, clock=lambda: now[0], min_interval=2.0, width=10)
    for t, moved in [(0.0, 0), (1.0, 10), (2.5, 20), (3.0, 30), (5.0, 30)]:
        now[0] = t
        reporter.update({"status": "running", "moved": moved, "to_move": 40})
    now[0] = 6.0
    reporter.finish({"status": "completed", "moved": 40, "to_move": 40})
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    assert [line.split("]")[1].split("%")[0].strip() for line in lines] == [
        "0/40   0",
        "20/40  50",
        "30/40  75",
        "40/40 100",
    ]
    assert lines[-1].endswith("completed")


# --------------------------------------------------------------------------- commands


def test_status_shows_health_and_queue_table() -> None:
    routes: dict[tuple[str, str], Reply | list[Reply]] = {
        ("GET", "/health"): (
            200,
            {"status": "ok", "checks": {"queues": "ok", "tables": {"status": "ok"}}},
        ),
        ("GET", "/v1/admin/queues"): (200, QUEUES),
    }
    result = run(["status"], routes)
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0] == f"API     {API}"
    assert lines[1] == "Health  ok  (2 checks ok)"
    assert lines[3].split() == [
        "QUEUE",
        "VISIBLE",
        "IN",
        "FLIGHT",
        "DELAYED",
        "OLDEST",
        "DLQ",
        "DLQ",
        "DEPTH",
    ]
    assert lines[4].split() == [
        "herald-local-jobs",
        "12",
        "3",
        "0",
        "2m",
        "05s",
        "herald-local-jobs-dlq",
        "4",
    ]
    assert lines[5].split()[4] == "-"
    health_call, queues_call = result.transport.calls
    assert "Authorization" not in health_call.headers
    assert queues_call.headers["Authorization"] == "Bearer tok-env"


def test_status_degraded_still_shows_queues_and_exits_1() -> None:
    routes: dict[tuple[str, str], Reply | list[Reply]] = {
        ("GET", "/health"): (
            503,
            {"status": "degraded", "checks": {"queues": "ok", "tables": False}},
        ),
        ("GET", "/v1/admin/queues"): (200, QUEUES),
    }
    result = run(["status"], routes)
    assert result.code == 1
    assert "Health  degraded  (failing: tables: failing)" in result.out
    assert "herald-local-jobs" in result.out


def test_status_json_is_raw() -> None:
    health = {"status": "ok", "checks": {}}
    routes: dict[tuple[str, str], Reply | list[Reply]] = {
        ("GET", "/health"): (200, health),
        ("GET", "/v1/admin/queues"): (200, QUEUES),
    }
    result = run(["status", "--json"], routes)
    assert json.loads(result.out) == {"health": health, "queues": QUEUES["items"]}


def test_api_error_prints_message_and_code_and_exits_1() -> None:
    routes: dict[tuple[str, str], Reply | list[Reply]] = {
        ("DELETE", "/v1/jobs/j-1"): (
            409,
            error_body("conflict", "Job j-1 is already completed."),
        ),
    }
    result = run(["jobs", "cancel", "j-1"], routes)
    assert result.code == 1
    assert result.err == "error: Job j-1 is already completed. (conflict)\n"
    assert result.out == ""


def test_validation_details_are_listed() -> None:
    details = [{"field": "kind", "problem": "must be daily, weekly or monthly"}]
    routes: dict[tuple[str, str], Reply | list[Reply]] = {
        ("POST", "/v1/digests/run"): (
            400,
            error_body("validation_error", "Invalid body.", details=details),
        ),
    }
    result = run(["digests", "run", "daily"], routes)
    assert result.code == 1
    assert result.err.splitlines() == [
        "error: Invalid body. (validation_error)",
        "  kind: must be daily, weekly or monthly",
    ]


@pytest.mark.parametrize(("status", "code"), [(401, "unauthorized"), (403, "forbidden")])
def test_auth_errors_exit_4_with_a_hint(status: int, code: str) -> None:
    routes: dict[tuple[str, str], Reply | list[Reply]] = {("GET", "/v1/jobs"): (status, error_body(code, "Nope."))}
    result = run(["jobs", "list"], routes)
    assert result.code == 4
    assert result.err.splitlines() == [
        f"error: Nope. ({code})",
        "hint: the token came from HERALD_TOKEN",
    ]


def test_unreachable_api_exits_3() -> None:
    routes: dict[tuple[str, str], Reply | list[Reply]] = {
        ("GET", "/v1/jobs"): TransportError("[Errno 111] Connection refused")
    }
    result = run(["jobs", "list"], routes)
    assert result.code == 3
    assert result.err == f"error: cannot reach the API at {API}: [Errno 111] Connection refused\n"


def test_non_json_gateway_error_is_reported_plainly() -> None:
    routes: dict[tuple[str, str], Reply | list[Reply]] = {("GET", "/v1/jobs"): (502, b"<html>Bad Gateway</html>")}
    result = run(["jobs", "list"], routes)
    assert result.code == 1
    assert result.err.startswith("error: HTTP 502 Bad Gateway")
    assert "(http_502)" in result.err


def test_gateway_message_body_is_used() -> None:
    routes: dict[tuple[str, str], Reply | list[Reply]] = {
        ("GET", "/v1/jobs"): (403, {"message": "Missing Authentication Token"})
    }
    result = run(["jobs", "list"], routes)
    assert result.code == 4
    assert result.err.startswith("error: Missing Authentication Token (http_403)")


def test_jobs_list_table_and_more_hint() -> None:
    page = {
        "items": [job("j-2"), job("j-1", status="completed", error=None, attempts=1)],
        "next_cursor": "c2",
    }
    routes: dict[tuple[str, str], Reply | list[Reply]] = {("GET", "/v1/jobs"): (200, page)}
    result = run(["jobs", "list", "--status", "dead", "--type", "sms", "--limit", "2"], routes)
    assert result.code == 0
    assert result.transport.calls[0].query == {
        "status": "dead",
        "type": "sms",
        "limit": "2",
    }
    lines = result.out.splitlines()
    assert lines[0].split()[:3] == ["JOB", "ID", "ORG"]
    assert lines[1].split()[:6] == ["j-2", "acme", "sms", "dead", "normal", "5/5"]
    assert "provider_timeout: no answer" in lines[1]
    assert lines[2].split()[-1] == "-"
    assert result.err == "more jobs: add --all, or --cursor c2\n"


def test_jobs_list_all_follows_every_cursor() -> None:
    pages: list[Reply] = [
        (200, {"items": [job("j-3"), job("j-2")], "next_cursor": "c1"}),
        (200, {"items": [job("j-1")], "next_cursor": None}),
    ]
    result = run(["jobs", "list", "--all", "--json"], {("GET", "/v1/jobs"): pages})
    assert result.code == 0
    assert [c.query for c in result.transport.calls] == [
        {"limit": "100"},
        {"limit": "100", "cursor": "c1"},
    ]
    assert [j["job_id"] for j in json.loads(result.out)["items"]] == [
        "j-3",
        "j-2",
        "j-1",
    ]


def test_jobs_show_escapes_the_id_and_prints_fields() -> None:
    job_id = "incident:INC-7:level:1:repeat:0"
    path = "/v1/jobs/incident%3AINC-7%3Alevel%3A1%3Arepeat%3A0"
    record = job(job_id, status="scheduled", error=None, result={"sent": 1})
    result = run(["jobs", "show", job_id], {("GET", path): (200, record)})
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0].split() == ["job_id", job_id]
    assert "created_at    2025-01-15 09:10:00Z" in lines
    assert 'result        {"sent": 1}' in lines


def test_jobs_commands_name_the_org_for_the_operator() -> None:
    routes: dict[tuple[str, str], Reply | list[Reply]] = {
        ("GET", "/v1/jobs/j-1"): (200, job("j-1")),
        ("DELETE", "/v1/jobs/j-1"): (200, job("j-1", status="cancelled")),
        ("GET", "/v1/jobs"): (200, {"items": [], "next_cursor": None}),
    }
    for argv in (["jobs", "show", "j-1"], ["jobs", "cancel", "j-1"], ["jobs", "list"]):
        result = run([*argv, "--org", "globex"], routes)
        assert result.code == 0, result.err
        assert result.transport.calls[0].query == {"org_id": "globex"}


def test_org_required_error_hints_at_org() -> None:
    body = error_body(
        "org_required",
        "The operator must name the organization: pass org_id.",
        details=[{"field": "org_id", "problem": "is required for the operator token"}],
    )
    result = run(["jobs", "list"], {("GET", "/v1/jobs"): (400, body)})
    assert result.code == 1
    assert result.err.splitlines() == [
        "error: The operator must name the organization: pass org_id. (org_required)",
        "  org_id: is required for the operator token",
        "hint: the operator token spans every organization: name one with --org ORG",
    ]


def test_jobs_show_json_is_the_record() -> None:
    record = job("j-1")
    result = run(["--json", "jobs", "show", "j-1"], {("GET", "/v1/jobs/j-1"): (200, record)})
    assert json.loads(result.out) == record


def test_jobs_cancel() -> None:
    routes: dict[tuple[str, str], Reply | list[Reply]] = {
        ("DELETE", "/v1/jobs/j-1"): (200, job("j-1", status="cancelled"))
    }
    result = run(["jobs", "cancel", "j-1"], routes)
    assert (result.code, result.out) == (0, "Cancelled job j-1 (status: cancelled).\n")


def test_dlq_list() -> None:
    result = run(["dlq", "list"], {("GET", "/v1/admin/queues"): (200, QUEUES)})
    assert result.code == 0
    lines = result.out.splitlines()
    assert lines[0].split() == ["QUEUE", "DLQ", "DEAD", "LETTERS"]
    assert lines[1].split() == ["herald-local-jobs", "herald-local-jobs-dlq", "4"]
    assert lines[-1] == "4 dead letters in all."


def test_dlq_peek_passes_filters_and_shows_errors() -> None:
    letter = {
        "message_id": "m-1",
        "job_id": "j-1",
        "org_id": "acme",
        "type": "webhook",
        "attempts": 5,
        "last_error": {"code": "webhook_http_410", "message": "Gone"},
        "first_seen_at": "2025-01-15T09:10:09.250Z",
    }
    path = "/v1/admin/queues/herald-local-jobs/dead-letters"
    result = run(
        [
            "dlq",
            "peek",
            "herald-local-jobs",
            "--org",
            "acme",
            "--type",
            "webhook",
            "--error-code",
            "webhook_http_410",
            "--limit",
            "5",
        ],
        {("GET", path): (200, {"items": [letter], "next_cursor": None})},
    )
    assert result.code == 0, result.err
    assert result.transport.calls[0].query == {
        "limit": "5",
        "org_id": "acme",
        "type": "webhook",
        "error_code": "webhook_http_410",
    }
    row = result.out.splitlines()[1].split()
    assert row == [
        "j-1",
        "acme",
        "webhook",
        "5",
        "webhook_http_410",
        "Gone",
        "2025-01-15",
        "09:10:09Z",
    ]


REDRIVE = "/v1/admin/queues/herald-local-jobs/redrive"


def test_dlq_redrive_polls_until_completed_with_progress() -> None:
    routes: dict[tuple[str, str], Reply | list[Reply]] = {
        ("POST", REDRIVE): (
            202,
            {"redrive_id": "rd-1", "status": "running", "moved": 0, "to_move": 4},
        ),
        ("GET", f"{REDRIVE}/rd-1"): [
            (
                200,
                {"redrive_id": "rd-1", "status": "running", "moved": 2, "to_move": 4},
            ),
            (
                200,
                {"redrive_id": "rd-1", "status": "completed", "moved": 4, "to_move": 4},
            ),
        ],
    }
    result = run(
        [
            "dlq",
            "redrive",
            "herald-local-jobs",
            "--org",
            "acme",
            "--max-per-second",
            "10",
            "--poll-interval",
            "0.5",
        ],
        routes,
        tty=True,
    )
    assert result.code == 0, result.err
    assert result.transport.calls[0].body == {"org_id": "acme", "max_per_second": 10}
    assert result.sleeps == [0.5, 0.5]
    assert "\r[###############---------------] 2/4  50%" in result.err
    assert "\r[##############################] 4/4 100%" in result.err
    assert result.out == "Redrive rd-1 completed: moved 4 of 4 dead letters back to herald-local-jobs.\n"


def test_dlq_redrive_keeps_following_through_a_transient_503() -> None:
    unavailable = (503, error_body("service_unavailable", "A service Herald relies on is unavailable."))
    routes: dict[tuple[str, str], Reply | list[Reply]] = {
        ("POST", REDRIVE): (202, {"redrive_id": "rd-1", "status": "running", "moved": 0, "to_move": 4}),
        ("GET", f"{REDRIVE}/rd-1"): [
            unavailable,
            unavailable,
            (200, {"redrive_id": "rd-1", "status": "completed", "moved": 4, "to_move": 4}),
        ],
    }
    result = run(["dlq", "redrive", "herald-local-jobs", "--poll-interval", "0.5"], routes)
    assert result.code == 0, result.err
    assert result.err.count("lost contact") == 2 and result.sleeps == [0.5, 0.5, 0.5]


def test_dlq_redrive_gives_up_after_a_run_of_failures_or_at_once_on_a_404() -> None:
    unavailable = (503, error_body("service_unavailable", "A service Herald relies on is unavailable."))
    start = (202, {"redrive_id": "rd-1", "status": "running", "moved": 0, "to_move": 4})
    poll = ("GET", f"{REDRIVE}/rd-1")
    routes: dict[tuple[str, str], Reply | list[Reply]] = {("POST", REDRIVE): start, poll: [unavailable]}
    result = run(["dlq", "redrive", "herald-local-jobs"], routes)
    assert result.code == 1 and len(result.sleeps) == 10
    routes = {("POST", REDRIVE): start, poll: [(404, error_body("not_found", "No such redrive."))]}
    result = run(["dlq", "redrive", "herald-local-jobs"], routes)
    assert result.code == 1 and len(result.sleeps) == 1


def test_dlq_redrive_json_prints_only_the_final_state_on_stdout() -> None:
    final = {"redrive_id": "rd-1", "status": "completed", "moved": 1, "to_move": 1}
    routes: dict[tuple[str, str], Reply | list[Reply]] = {
        ("POST", REDRIVE): (
            202,
            {"redrive_id": "rd-1", "status": "running", "moved": 0, "to_move": 1},
        ),
        ("GET", f"{REDRIVE}/rd-1"): (200, final),
    }
    result = run(["dlq", "redrive", "herald-local-jobs", "--json"], routes)
    assert result.code == 0
    assert json.loads(result.out) == final
    assert "1/1 100%" in result.err


def test_dlq_redrive_that_fails_exits_1() -> None:
    routes: dict[tuple[str, str], Reply | list[Reply]] = {
        ("POST", REDRIVE): (
            202,
            {"redrive_id": "rd-1", "status": "running", "moved": 0, "to_move": 3},
        ),
        ("GET", f"{REDRIVE}/rd-1"): (
            200,
            {
                "redrive_id": "rd-1",
                "status": "failed",
                "moved": 1,
                "to_move": 3,
                "error": {"code": "sqs_error", "message": "Access denied"},
            },
        ),
    }
    result = run(["dlq", "redrive", "herald-local-jobs"], routes)
    assert result.code == 1
    assert result.err.splitlines()[-1] == "error: redrive rd-1 failed: Access denied (sqs_error)"


def test_dlq_redrive_dry_run_moves_nothing() -> None:
    routes: dict[tuple[str, str], Reply | list[Reply]] = {
        ("POST", REDRIVE): (
            200,
            {"redrive_id": None, "status": "completed", "moved": 0, "to_move": 3},
        )
    }
    result = run(
        [
            "dlq",
            "redrive",
            "herald-local-jobs",
            "--error-code",
            "provider_timeout",
            "--dry-run",
        ],
        routes,
    )
    assert result.code == 0
    assert result.transport.calls[0].body == {
        "error_code": "provider_timeout",
        "dry_run": True,
    }
    assert len(result.transport.calls) == 1
    assert result.out == "Dry run: 3 dead letters in herald-local-jobs match; nothing moved.\n"


def test_dlq_redrive_no_wait_prints_the_id() -> None:
    routes: dict[tuple[str, str], Reply | list[Reply]] = {
        ("POST", REDRIVE): (
            202,
            {"redrive_id": "rd-9", "status": "running", "moved": 0, "to_move": 3},
        )
    }
    result = run(["dlq", "redrive", "herald-local-jobs", "--job-id", "j-1", "--no-wait"], routes)
    assert result.code == 0
    assert result.out == "rd-9\n"
    assert result.transport.calls[0].body == {"job_id": "j-1"}
    assert "herald dlq watch herald-local-jobs rd-9" in result.err
    assert result.sleeps == []


def test_dlq_watch_follows_an_earlier_redrive() -> None:
    routes: dict[tuple[str, str], Reply | list[Reply]] = {
        ("GET", f"{REDRIVE}/rd-9"): [
            (
                200,
                {"redrive_id": "rd-9", "status": "running", "moved": 1, "to_move": 3},
            ),
            (
                200,
                {"redrive_id": "rd-9", "status": "completed", "moved": 3, "to_move": 3},
            ),
        ]
    }
    result = run(["dlq", "watch", "herald-local-jobs", "rd-9"], routes)
    assert result.code == 0
    assert "3/3 100%" in result.err


def test_unreachable_api_during_a_redrive_exits_3() -> None:
    routes: dict[tuple[str, str], Reply | list[Reply]] = {
        ("POST", REDRIVE): (
            202,
            {"redrive_id": "rd-1", "status": "running", "moved": 0, "to_move": 3},
        ),
        ("GET", f"{REDRIVE}/rd-1"): TransportError("timed out"),
    }
    result = run(["dlq", "redrive", "herald-local-jobs"], routes)
    assert result.code == 3


def test_digests_run_for_one_org() -> None:
    routes: dict[tuple[str, str], Reply | list[Reply]] = {
        ("POST", "/v1/digests/run"): (
            202,
            job("digest:daily:acme", status="queued", type="digest", error=None),
        )
    }
    result = run(["digests", "run", "daily", "--org", "acme"], routes)
    assert result.code == 0
    assert result.transport.calls[0].body == {"kind": "daily", "org_id": "acme"}
    assert result.out == "Daily digest for acme: job digest:daily:acme (queued).\n"


def test_digests_run_for_all_orgs_sends_no_org() -> None:
    routes: dict[tuple[str, str], Reply | list[Reply]] = {
        ("POST", "/v1/digests/run"): (
            202,
            job("d-1", status="queued", type="digest", org_id=None, error=None),
        )
    }
    result = run(["digests", "run", "weekly"], routes)
    assert result.transport.calls[0].body == {"kind": "weekly"}
    assert "every organization" in result.out


# --------------------------------------------------------------------------- the urllib transport


def test_urllib_transport_turns_connection_failures_into_transport_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    with pytest.raises(TransportError, match="Connection refused"):
        UrllibTransport()("GET", "http://127.0.0.1:9/health", {}, None, 1.0)


def test_urllib_transport_returns_http_errors_as_responses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    body = json.dumps(error_body("not_found", "No job x.")).encode()

    def not_found(request: Any, timeout: float) -> Any:
        assert request.get_method() == "DELETE"
        assert request.get_header("Authorization") == "Bearer t"
        raise urllib.error.HTTPError(request.full_url, 404, "Not Found", {}, io.BytesIO(body))  # type: ignore[arg-type]

    monkeypatch.setattr(urllib.request, "urlopen", not_found)
    response = UrllibTransport()("DELETE", "http://h/v1/jobs/x", {"Authorization": "Bearer t"}, None, 1.0)
    assert (response.status, response.body) == (404, body)
