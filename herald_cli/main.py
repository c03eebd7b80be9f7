"""``herald``: operate a Herald deployment from the shell.

Every command calls the HTTP API described in the project's API contract; ``--json`` prints the
API's JSON as-is on stdout, everything meant for people (progress, hints, errors) goes to stderr
or to a formatted stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from herald_cli import __version__
from herald_cli.client import (
    ApiClient,
    ApiError,
    NoTokenError,
    Transport,
    TransportError,
    UrllibTransport,
    quote,
)
from herald_cli.config import ConfigError, Settings, resolve_settings
from herald_cli.render import (
    ProgressReporter,
    cell,
    format_age,
    format_table,
    format_time,
    truncate,
)

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_AUTH = 4
EXIT_INTERRUPTED = 130

JOB_STATUSES = (
    "scheduled",
    "queued",
    "active",
    "completed",
    "failed",
    "dead",
    "cancelled",
)
DIGEST_KINDS = ("daily", "weekly", "monthly")
REDRIVE_FINAL = frozenset({"completed", "failed", "cancelled"})
# While following a redrive: answers that mean "not now", and how many in a row end the wait.
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_POLL_FAILURES = 10
MAX_PAGES = 10_000

EPILOG = """\
examples:
  herald status                                 health and queue depths
  herald dlq list                               dead letters per queue
  herald dlq peek QUEUE --error-code provider_timeout
  herald dlq redrive QUEUE --org acme --dry-run
  herald dlq redrive QUEUE --max-per-second 50
  herald jobs list --org acme --status dead     acme's dead jobs, newest first
  herald jobs show JOB_ID --org acme
  herald digests run daily --org acme
  herald jobs list --org acme --all --json | jq -r '.items[].job_id'

configuration (first match wins):
  API URL  --api-url, then $HERALD_API_URL, then "api_url" in .herald/stack.json
  token    --token, then the admin token of --org ORG in stack.json, then $HERALD_TOKEN,
           then "operator_token" in stack.json
  --org ORG also names the organization a command acts on (org_id); the operator token,
  which spans every organization, needs it for jobs. stack.json is the file `make up`
  writes: it is searched for in the current directory and its parents (or: --stack FILE).

exit codes:
  0 ok, 1 API or other error, 2 usage or configuration error, 3 cannot reach the API,
  4 authentication or permission error (401/403)
"""


@dataclass
class Context:
    client: ApiClient
    settings: Settings
    out: TextIO
    err: TextIO
    json: bool
    sleep: Callable[[float], None]
    clock: Callable[[], float]
    err_is_tty: bool

    def emit_json(self, payload: object) -> None:
        self.out.write(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")

    def say(self, text: str = "") -> None:
        self.out.write(text + "\n")

    def note(self, text: str) -> None:
        self.err.write(text + "\n")


# --------------------------------------------------------------------------- argument parsing


def _limit(text: str) -> int:
    value = _positive_int(text)
    if value > 100:
        raise argparse.ArgumentTypeError("must be between 1 and 100")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


def _add_connection_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("connection options")
    group.add_argument(
        "--api-url",
        metavar="URL",
        help="base URL of the Herald API (env HERALD_API_URL)",
    )
    group.add_argument(
        "--token",
        metavar="TOKEN",
        help="bearer token to call the API with (env HERALD_TOKEN)",
    )
    group.add_argument(
        "--org",
        metavar="ORG",
        help="the organization to act on: sent as org_id (the operator token needs it for jobs), "
        "and its admin token from .herald/stack.json is used when listed there",
    )
    group.add_argument(
        "--stack",
        metavar="FILE",
        help="stack.json to read (default: .herald/stack.json here or above)",
    )
    group.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=_positive_float,
        help="HTTP timeout (default: 30)",
    )
    group.add_argument(
        "--json",
        action="store_true",
        help="print the API's raw JSON on stdout, for scripts",
    )


def build_parser() -> argparse.ArgumentParser:
    # Connection options work before and after the command: the sub-parsers get copies whose
    # defaults are SUPPRESSed, so they only override what the top-level parser set.
    common = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    _add_connection_options(common)

    parser = argparse.ArgumentParser(
        prog="herald",
        description="Operate Herald: queues, dead letters and redrives, jobs and digests.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_connection_options(parser)
    parser.set_defaults(timeout=30.0)
    parser.add_argument("--version", action="version", version=f"herald {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, help="what to do")

    def leaf(
        group: Any,
        name: str,
        summary: str,
        handler: Handler,
    ) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = group.add_parser(
            name,
            help=summary,
            description=summary,
            parents=[common],
        )
        sub.set_defaults(handler=handler)
        return sub

    leaf(
        commands,
        "status",
        "Show the API's health and every queue's depths.",
        cmd_status,
    )

    jobs = commands.add_parser("jobs", help="List, show and cancel jobs.", description="Jobs.")
    jobs_cmds = jobs.add_subparsers(dest="jobs_command", metavar="SUBCOMMAND", required=True, help="what to do")
    p = leaf(jobs_cmds, "list", "List jobs, newest first.", cmd_jobs_list)
    p.add_argument("--status", choices=JOB_STATUSES, help="only jobs in this status")
    p.add_argument(
        "--type",
        metavar="TYPE",
        help="only jobs of this type (sms, email, webhook, ...)",
    )
    p.add_argument(
        "--limit",
        type=_limit,
        metavar="N",
        help="jobs per page, 1..100 (default: the API's, 20)",
    )
    p.add_argument("--all", action="store_true", help="follow next_cursor through every page")
    p.add_argument(
        "--cursor",
        metavar="CURSOR",
        help="start at this next_cursor of a previous page",
    )
    p = leaf(jobs_cmds, "show", "Show one job's record.", cmd_jobs_show)
    p.add_argument("job_id", metavar="JOB_ID", help="the job's id")
    p = leaf(jobs_cmds, "cancel", "Cancel a scheduled or queued job.", cmd_jobs_cancel)
    p.add_argument("job_id", metavar="JOB_ID", help="the job's id")

    dlq = commands.add_parser(
        "dlq",
        help="Inspect and redrive dead letters.",
        description="Dead-letter queues.",
    )
    dlq_cmds = dlq.add_subparsers(dest="dlq_command", metavar="SUBCOMMAND", required=True, help="what to do")
    leaf(dlq_cmds, "list", "Show how many dead letters each queue holds.", cmd_dlq_list)

    p = leaf(
        dlq_cmds,
        "peek",
        "List a queue's dead letters without consuming them.",
        cmd_dlq_peek,
    )
    p.add_argument("queue", metavar="QUEUE", help="source queue name (see `herald dlq list`)")
    _add_filters(p)
    p.add_argument("--limit", type=_limit, metavar="N", help="at most N dead letters, 1..100")

    p = leaf(
        dlq_cmds,
        "redrive",
        "Move a queue's dead letters back to it and follow the progress.",
        cmd_dlq_redrive,
    )
    p.add_argument("queue", metavar="QUEUE", help="source queue name (see `herald dlq list`)")
    _add_filters(p)
    p.add_argument("--job-id", metavar="JOB_ID", help="only the dead letter of this job")
    p.add_argument(
        "--max-per-second",
        type=_positive_int,
        metavar="N",
        help="move at most N messages a second",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="only count the matching dead letters; move nothing",
    )
    p.add_argument("--no-wait", action="store_true", help="print the redrive id and return at once")
    p.add_argument(
        "--poll-interval",
        type=_positive_float,
        default=1.0,
        metavar="SECONDS",
        help="seconds between progress checks (default: 1)",
    )

    p = leaf(
        dlq_cmds,
        "watch",
        "Follow a redrive started earlier (e.g. with --no-wait).",
        cmd_dlq_watch,
    )
    p.add_argument("queue", metavar="QUEUE", help="source queue name")
    p.add_argument("redrive_id", metavar="REDRIVE_ID", help="id printed when the redrive started")
    p.add_argument(
        "--poll-interval",
        type=_positive_float,
        default=1.0,
        metavar="SECONDS",
        help="seconds between progress checks (default: 1)",
    )

    digests = commands.add_parser("digests", help="Run digests now.", description="Digests.")
    digest_cmds = digests.add_subparsers(dest="digests_command", metavar="SUBCOMMAND", required=True, help="what to do")
    p = leaf(
        digest_cmds,
        "run",
        "Run a digest now (an admin: its own organization; the operator: one or all).",
        cmd_digests_run,
    )
    p.add_argument("kind", choices=DIGEST_KINDS, help="which digest to run")
    return parser


def _add_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--type", metavar="TYPE", help="only dead letters of this job type")
    parser.add_argument(
        "--error-code",
        metavar="CODE",
        help="only dead letters whose last error has this code",
    )


# --------------------------------------------------------------------------- commands

Handler = Callable[[Context, argparse.Namespace], int]


def items_of(payload: Any, *keys: str) -> list[dict[str, Any]]:
    """The rows of a list answer: ``{"items": [...]}`` (the contract) or a bare list."""
    if isinstance(payload, dict):
        for key in ("items", *keys):
            if isinstance(payload.get(key), list):
                payload = payload[key]
                break
    if not isinstance(payload, list):
        raise ApiError(200, "bad_response", "the API answered with no list of items")
    return [row for row in payload if isinstance(row, dict)]


def queue_table(queues: Sequence[Mapping[str, Any]]) -> str:
    rows = [
        [
            cell(q.get("name")),
            cell(q.get("visible")),
            cell(q.get("in_flight")),
            cell(q.get("delayed")),
            format_age(q.get("oldest_message_age_s")),
            cell(q.get("dlq_name")),
            cell(q.get("dlq_depth")),
        ]
        for q in queues
    ]
    headers = ["QUEUE", "VISIBLE", "IN FLIGHT", "DELAYED", "OLDEST", "DLQ", "DLQ DEPTH"]
    return format_table(headers, rows, right=(1, 2, 3, 4, 6))


def _health_summary(health: Any) -> tuple[str, bool]:
    """``ok  (9 checks ok)`` or ``degraded  (failing: table: timeout)``."""
    if not isinstance(health, dict):
        return "unknown", False
    status = str(health.get("status", "unknown"))
    checks = health.get("checks")
    if not isinstance(checks, dict) or not checks:
        return status, status == "ok"
    failing = []
    for name, value in checks.items():
        if isinstance(value, dict):
            value = value.get("status", value.get("ok", json.dumps(value)))
        if isinstance(value, bool):
            value = "ok" if value else "failing"
        if value != "ok":
            failing.append(f"{name}: {value}")
    if failing:
        return f"{status}  (failing: {', '.join(failing)})", status == "ok"
    return f"{status}  ({len(checks)} check{'s' if len(checks) != 1 else ''} ok)", status == "ok"


def cmd_status(ctx: Context, args: argparse.Namespace) -> int:
    health: Any = None
    try:
        health = ctx.client.request("GET", "/health", auth=False, accept_statuses=(503,))
        summary, healthy = _health_summary(health)
    except ApiError as exc:
        summary, healthy = f"error: {exc}", False
    if not ctx.json:  # health first: it is worth seeing even if the queues cannot be read
        ctx.say(f"API     {ctx.settings.api_url}")
        ctx.say(f"Health  {summary}")
        ctx.say()
    queues = items_of(ctx.client.get("/v1/admin/queues"), "queues")
    if ctx.json:
        ctx.emit_json({"health": health, "queues": queues})
    else:
        ctx.say(queue_table(queues) if queues else "No queues.")
    return EXIT_OK if healthy else EXIT_ERROR


def _job_row(job: Mapping[str, Any]) -> list[str]:
    error = job.get("error")
    error_text = "-"
    if isinstance(error, dict):
        error_text = truncate(f"{error.get('code', '')}: {error.get('message', '')}", 48)
    return [
        cell(job.get("job_id")),
        cell(job.get("org_id")),
        cell(job.get("type")),
        cell(job.get("status")),
        cell(job.get("priority")),
        f"{cell(job.get('attempts'))}/{cell(job.get('max_attempts'))}",
        format_time(job.get("created_at")),
        error_text,
    ]


def cmd_jobs_list(ctx: Context, args: argparse.Namespace) -> int:
    query: dict[str, object | None] = {
        "org_id": args.org,
        "status": args.status,
        "type": args.type,
        "limit": args.limit if args.limit or not args.all else 100,
        "cursor": args.cursor,
    }
    jobs: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(MAX_PAGES):
        page = ctx.client.get("/v1/jobs", **query)
        jobs.extend(items_of(page))
        cursor = page.get("next_cursor") if isinstance(page, dict) else None
        if not args.all or not cursor:
            break
        query["cursor"] = cursor
    if ctx.json:
        ctx.emit_json({"items": jobs, "next_cursor": cursor})
        return EXIT_OK
    if not jobs:
        ctx.say("No jobs.")
    else:
        headers = [
            "JOB ID",
            "ORG",
            "TYPE",
            "STATUS",
            "PRIORITY",
            "ATTEMPTS",
            "CREATED",
            "ERROR",
        ]
        ctx.say(format_table(headers, [_job_row(j) for j in jobs], right=(5,)))
    if cursor and not args.all:
        ctx.note(f"more jobs: add --all, or --cursor {cursor}")
    return EXIT_OK


JOB_FIELDS = (
    "job_id",
    "org_id",
    "type",
    "status",
    "priority",
    "attempts",
    "max_attempts",
    "created_at",
    "run_at",
    "started_at",
    "finished_at",
    "result",
    "error",
)


def _show_record(ctx: Context, record: Mapping[str, Any]) -> None:
    keys = [k for k in JOB_FIELDS if k in record] + [k for k in record if k not in JOB_FIELDS]
    width = max((len(k) for k in keys), default=0)
    for key in keys:
        value = record[key]
        if isinstance(value, (dict, list)):
            text = json.dumps(value, ensure_ascii=False, sort_keys=True)
        elif key.endswith("_at"):
            text = format_time(value)
        else:
            text = cell(value)
        ctx.say(f"{key.ljust(width)}  {text}")


def cmd_jobs_show(ctx: Context, args: argparse.Namespace) -> int:
    record = ctx.client.get(f"/v1/jobs/{quote(args.job_id)}", org_id=args.org)
    if ctx.json:
        ctx.emit_json(record)
    elif isinstance(record, dict):
        _show_record(ctx, record)
    return EXIT_OK


def cmd_jobs_cancel(ctx: Context, args: argparse.Namespace) -> int:
    record = ctx.client.request("DELETE", f"/v1/jobs/{quote(args.job_id)}", query={"org_id": args.org})
    if ctx.json:
        ctx.emit_json(record)
    else:
        status = record.get("status") if isinstance(record, dict) else None
        ctx.say(f"Cancelled job {args.job_id} (status: {cell(status)}).")
    return EXIT_OK


def cmd_dlq_list(ctx: Context, args: argparse.Namespace) -> int:
    queues = items_of(ctx.client.get("/v1/admin/queues"), "queues")
    if ctx.json:
        ctx.emit_json({"items": queues, "next_cursor": None})
        return EXIT_OK
    if not queues:
        ctx.say("No queues.")
        return EXIT_OK
    rows = [[cell(q.get("name")), cell(q.get("dlq_name")), cell(q.get("dlq_depth"))] for q in queues]
    ctx.say(format_table(["QUEUE", "DLQ", "DEAD LETTERS"], rows, right=(2,)))
    total = sum(q["dlq_depth"] for q in queues if isinstance(q.get("dlq_depth"), int))
    ctx.say(f"\n{total} dead letter{'s' if total != 1 else ''} in all.")
    return EXIT_OK


def _filters(args: argparse.Namespace) -> dict[str, object | None]:
    return {"org_id": args.org, "type": args.type, "error_code": args.error_code}


def cmd_dlq_peek(ctx: Context, args: argparse.Namespace) -> int:
    page = ctx.client.get(
        f"/v1/admin/queues/{quote(args.queue)}/dead-letters",
        limit=args.limit,
        **_filters(args),
    )
    letters = items_of(page)
    if ctx.json:
        ctx.emit_json(page)
        return EXIT_OK
    if not letters:
        ctx.say(f"No dead letters in {args.queue} match.")
        return EXIT_OK
    rows = []
    for letter in letters:
        last_error = letter.get("last_error")
        error: dict[str, Any] = last_error if isinstance(last_error, dict) else {}
        rows.append(
            [
                cell(letter.get("job_id")),
                cell(letter.get("org_id")),
                cell(letter.get("type")),
                cell(letter.get("attempts")),
                cell(error.get("code")),
                truncate(cell(error.get("message")), 60),
                format_time(letter.get("first_seen_at")),
            ]
        )
    headers = ["JOB ID", "ORG", "TYPE", "ATTEMPTS", "ERROR", "MESSAGE", "FIRST SEEN"]
    ctx.say(format_table(headers, rows, right=(3,)))
    if isinstance(page, dict) and page.get("next_cursor"):
        ctx.note("more dead letters match: raise --limit or narrow the filters")
    return EXIT_OK


def _redrive_path(queue: str, redrive_id: str | None = None) -> str:
    path = f"/v1/admin/queues/{quote(queue)}/redrive"
    return path if redrive_id is None else f"{path}/{quote(redrive_id)}"


def cmd_dlq_redrive(ctx: Context, args: argparse.Namespace) -> int:
    body = {
        k: v
        for k, v in {
            **_filters(args),
            "job_id": args.job_id,
            "max_per_second": args.max_per_second,
            "dry_run": True if args.dry_run else None,
        }.items()
        if v is not None
    }
    started = ctx.client.post(_redrive_path(args.queue), body)
    if not isinstance(started, dict):
        raise ApiError(200, "bad_response", "the redrive answer is not a JSON object")
    if args.dry_run:
        if ctx.json:
            ctx.emit_json(started)
        else:
            n = started.get("to_move", 0)
            plural = "" if n == 1 else "s"
            ctx.say(f"Dry run: {n} dead letter{plural} in {args.queue} match; nothing moved.")
        return EXIT_OK
    redrive_id = str(started.get("redrive_id", ""))
    if args.no_wait:
        if ctx.json:
            ctx.emit_json(started)
        else:
            ctx.say(redrive_id)
            ctx.note(
                f"redrive {redrive_id} {started.get('status', 'running')}: "
                f"{cell(started.get('to_move'))} to move; follow it with "
                f"`herald dlq watch {args.queue} {redrive_id}`"
            )
        return EXIT_OK
    if not ctx.json:
        ctx.note(f"redrive {redrive_id}: {cell(started.get('to_move'))} dead letters from {args.queue}")
    return _follow(ctx, args.queue, started, args.poll_interval)


def cmd_dlq_watch(ctx: Context, args: argparse.Namespace) -> int:
    state = ctx.client.get(_redrive_path(args.queue, args.redrive_id))
    if not isinstance(state, dict):
        raise ApiError(200, "bad_response", "the redrive answer is not a JSON object")
    state.setdefault("redrive_id", args.redrive_id)
    return _follow(ctx, args.queue, state, args.poll_interval)


def _follow(ctx: Context, queue: str, state: dict[str, Any], interval: float) -> int:
    redrive_id = str(state.get("redrive_id", ""))
    reporter = ProgressReporter(ctx.err, ctx.err_is_tty, ctx.clock)
    failures = 0
    try:
        while state.get("status") not in REDRIVE_FINAL:
            reporter.update(state)
            ctx.sleep(interval)
            try:
                polled = ctx.client.get(_redrive_path(queue, redrive_id))
            except (ApiError, TransportError) as exc:
                # The redrive runs on server-side: a blip (503, throttling, a dropped connection)
                # is not its end. Keep following; give up after a run of failures.
                transient = isinstance(exc, TransportError) or exc.status in TRANSIENT_STATUSES
                failures += 1
                if not transient or failures >= MAX_POLL_FAILURES:
                    raise
                ctx.note(f"lost contact ({exc}); retrying")
                continue
            failures = 0
            if not isinstance(polled, dict):
                raise ApiError(200, "bad_response", "the redrive answer is not a JSON object")
            state = polled
    except KeyboardInterrupt:
        ctx.note(f"\ninterrupted: redrive {redrive_id} goes on; follow it with `herald dlq watch {queue} {redrive_id}`")
        return EXIT_INTERRUPTED
    reporter.finish(state)
    status = state.get("status")
    if ctx.json:
        ctx.emit_json(state)
    else:
        ctx.say(
            f"Redrive {redrive_id} {status}: moved {cell(state.get('moved'))} of "
            f"{cell(state.get('to_move'))} dead letters back to {queue}."
        )
    if status == "completed":
        return EXIT_OK
    error = state.get("error")
    reason = ""
    if isinstance(error, dict) and error.get("message"):
        reason = f": {error['message']} ({error.get('code', 'error')})"
    ctx.note(f"error: redrive {redrive_id} {status}{reason}")
    return EXIT_ERROR


def cmd_digests_run(ctx: Context, args: argparse.Namespace) -> int:
    body: dict[str, str] = {"kind": args.kind}
    if args.org:
        body["org_id"] = args.org
    job = ctx.client.post("/v1/digests/run", body)
    if ctx.json:
        ctx.emit_json(job)
    elif isinstance(job, dict):
        scope = args.org or job.get("org_id") or "every organization"
        ctx.say(
            f"{args.kind.capitalize()} digest for {scope}: job {cell(job.get('job_id'))} ({cell(job.get('status'))})."
        )
    return EXIT_OK


# --------------------------------------------------------------------------- entry point


def main(
    argv: Sequence[str] | None = None,
    *,
    transport: Transport | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Run one command; returns the process exit code (see the epilog)."""
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE

    try:
        settings = resolve_settings(
            api_url=args.api_url,
            token=args.token,
            org=args.org,
            stack_file=args.stack,
            env=os.environ if env is None else env,
            cwd=Path.cwd() if cwd is None else cwd,
        )
    except ConfigError as exc:
        err.write(f"error: {exc}\n")
        return EXIT_USAGE

    client = ApiClient(settings.api_url, settings.token, transport or UrllibTransport(), args.timeout)
    is_tty = hasattr(err, "isatty") and err.isatty()
    ctx = Context(client, settings, out, err, args.json, sleep, clock, is_tty)
    handler: Handler = args.handler
    try:
        return handler(ctx, args)
    except NoTokenError as exc:
        err.write(f"error: {exc}\n")
        return EXIT_USAGE
    except ApiError as exc:
        err.write(f"error: {exc.message} ({exc.code})\n")
        for detail in exc.details:
            if isinstance(detail, dict):
                err.write(f"  {detail.get('field', '?')}: {detail.get('problem', '')}\n")
        if exc.status == 404 and exc.message == "Missing Authentication Token":
            err.write("hint: API Gateway answers this way for a route it does not know\n")
        if exc.code == "org_required":
            err.write("hint: the operator token spans every organization: name one with --org ORG\n")
        if exc.status in (401, 403):
            err.write(f"hint: the token came from {settings.token_source}\n")
            return EXIT_AUTH
        return EXIT_ERROR
    except TransportError as exc:
        err.write(f"error: cannot reach the API at {settings.api_url}: {exc}\n")
        return EXIT_UNREACHABLE
    except KeyboardInterrupt:
        err.write("\ninterrupted\n")
        return EXIT_INTERRUPTED
