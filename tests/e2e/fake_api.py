"""A small in-process stand-in for the Herald API, with canned data.

It implements just enough of the contract (the API contract's Operations and Jobs sections)
to drive the dashboard and the CLI end to end: queues, dead letters, a redrive that moves
``moves_per_poll`` dead letters each time its progress is read, jobs and digest runs. It also
serves the real ``chalicelib/dashboard.html`` at ``{prefix}/admin``, under a path prefix like
API Gateway's ``/_aws/execute-api/<id>/<stage>``, so the dashboard's base-path logic is tested.

Run it by hand to look at the dashboard: ``python tests/e2e/fake_api.py --port 8765``.
"""

from __future__ import annotations

import argparse
import copy
import json
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

DASHBOARD = Path(__file__).resolve().parents[2] / "chalicelib" / "dashboard.html"
OPERATOR_TOKEN = "op-local-operator-token"
ACME_ADMIN_TOKEN = "acme-admin-token"
ACME_MEMBER_TOKEN = "acme-member-token"
JOBS_QUEUE = "herald-local-jobs"
DIGESTS_QUEUE = "herald-local-digests"
# The page holds all its code inline and talks only to its own origin.
DASHBOARD_CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)


def _ts(minute: int, second: int = 0) -> str:
    return f"2025-01-15T09:{minute:02d}:{second:02d}.250Z"


def _job(job_id: str, org: str, type_: str, status: str, minute: int, **extra: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "job_id": job_id,
        "org_id": org,
        "type": type_,
        "status": status,
        "priority": "normal",
        "attempts": 0,
        "max_attempts": 5,
        "created_at": _ts(minute),
        "run_at": _ts(minute),
        "started_at": None,
        "finished_at": None,
        "result": None,
        "error": None,
    }
    record.update(extra)
    return record


@dataclass
class Redrive:
    redrive_id: str
    queue: str
    job_ids: list[str]
    moved: int = 0
    status: str = "running"

    def view(self) -> dict[str, Any]:
        return {
            "redrive_id": self.redrive_id,
            "status": self.status,
            "moved": self.moved,
            "to_move": len(self.job_ids),
        }


@dataclass
class FakeHerald:
    """The fake API's state and server. Use ``with FakeHerald(...).running() as fake:``."""

    prefix: str = "/prefix"
    dead_letters: int = 1
    moves_per_poll: int = 1
    # token -> (role, org_id); the operator spans every organization
    tokens: dict[str, tuple[str, str | None]] = field(
        default_factory=lambda: {
            OPERATOR_TOKEN: ("operator", None),
            ACME_ADMIN_TOKEN: ("admin", "acme"),
            ACME_MEMBER_TOKEN: ("member", "acme"),
        }
    )
    requests: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.jobs: dict[str, dict[str, Any]] = {}
        self.dlq: dict[str, list[dict[str, Any]]] = {JOBS_QUEUE: [], DIGESTS_QUEUE: []}
        self.redrives: dict[str, Redrive] = {}
        self._server: ThreadingHTTPServer | None = None
        self._seed()

    # ------------------------------------------------------------------ canned data

    def _seed(self) -> None:
        errors = [
            (
                "webhook_http_410",
                "POST https://hooks.example.test/incidents answered 410 <b>Gone</b>",
            ),
            ("provider_timeout", "Telnyx did not answer within 10 s"),
            ("invalid_phone_number", "+1555 is not an E.164 number"),
        ]
        for i in range(self.dead_letters):
            job_id = f"job-dead-{i + 1:04d}"
            code, message = errors[i % len(errors)]
            org = "acme" if i % 2 == 0 else "globex"
            type_ = "webhook" if code.startswith("webhook") else "sms"
            self.jobs[job_id] = _job(
                job_id,
                org,
                type_,
                "dead",
                10 + i % 40,
                attempts=5,
                started_at=_ts(10 + i % 40, 5),
                finished_at=_ts(10 + i % 40, 9),
                error={"code": code, "message": message, "retryable": False},
            )
            self.dlq[JOBS_QUEUE].append(
                {
                    "message_id": f"msg-{i + 1:04d}",
                    "job_id": job_id,
                    "org_id": org,
                    "type": type_,
                    "attempts": 5,
                    "last_error": {"code": code, "message": message},
                    "first_seen_at": _ts(10 + i % 40, 9),
                }
            )
        self.jobs["job-retry-0001"] = _job(
            "job-retry-0001",
            "globex",
            "email",
            "failed",
            50,
            attempts=2,
            priority="high",
            started_at=_ts(50, 1),
            error={
                "code": "ses_throttled",
                "message": "Maximum sending rate exceeded",
                "retryable": True,
            },
        )
        self.jobs["job-ok-0001"] = _job(
            "job-ok-0001",
            "acme",
            "sms",
            "completed",
            55,
            attempts=1,
            started_at=_ts(55, 1),
            finished_at=_ts(55, 2),
            result={"provider": "sns", "message_id": "sns-123"},
        )

    def queues(self) -> list[dict[str, Any]]:
        return [
            {
                "name": JOBS_QUEUE,
                "visible": 3,
                "in_flight": 1,
                "delayed": 2,
                "dlq_name": f"{JOBS_QUEUE}-dlq",
                "dlq_depth": len(self.dlq[JOBS_QUEUE]),
                "oldest_message_age_s": 42,
            },
            {
                "name": DIGESTS_QUEUE,
                "visible": 0,
                "in_flight": 0,
                "delayed": 0,
                "dlq_name": f"{DIGESTS_QUEUE}-dlq",
                "dlq_depth": len(self.dlq[DIGESTS_QUEUE]),
                "oldest_message_age_s": None,
            },
        ]

    # ------------------------------------------------------------------ server

    @property
    def base_url(self) -> str:
        assert self._server is not None, "the fake API is not running"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{self.prefix}"

    @contextmanager
    def running(self, port: int = 0) -> Iterator[FakeHerald]:
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler_for(self))
        self._server.daemon_threads = True
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            thread.join(timeout=5)

    # ------------------------------------------------------------------ routes

    def handle(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        headers: dict[str, str],
        body: bytes,
    ) -> tuple[int, Any]:
        """Answer one request: (status, JSON-able body)."""
        if method == "GET" and path == "/health":
            return 200, {"status": "ok", "checks": {"queues": "ok", "tables": "ok"}}
        if not path.startswith("/v1/"):
            return _error(404, "not_found", f"No route {method} {path}.")
        auth = headers.get("authorization", "")
        token = auth[7:] if auth.lower().startswith("bearer ") else ""
        principal = self.tokens.get(token)
        if principal is None:
            return _error(401, "unauthorized", "Missing or unknown bearer token.")
        role, own_org = principal
        payload: Any = None
        if body:
            try:
                payload = json.loads(body)
            except ValueError:
                return _error(400, "malformed_json", "The request body is not valid JSON.")
        parts = [urllib.parse.unquote(p) for p in path.strip("/").split("/")]
        if len(parts) < 2:
            return _error(404, "not_found", "No such route.")
        body_fields: dict[str, Any] = payload if isinstance(payload, dict) else {}
        # Like the real API: an org-bound token acts on its own organization whatever it sends;
        # the operator names one with org_id (required for jobs, optional for operations).
        org = own_org or query.get("org_id") or body_fields.get("org_id")
        if own_org:
            query = {**query, "org_id": own_org}
            body_fields = {**body_fields, "org_id": own_org}
        with self.lock:
            if parts[1] in ("admin", "digests") and role not in ("admin", "operator"):
                return _error(403, "forbidden", "This route needs an admin or operator token.")
            if parts[1] == "jobs" and not org:
                return 400, {
                    "error": {
                        "code": "org_required",
                        "message": "The operator must name the organization: pass org_id.",
                        "details": [{"field": "org_id", "problem": "is required for the operator token"}],
                    }
                }
            return self._route(method, parts[1:], query, body_fields, org)

    def _route(
        self,
        method: str,
        parts: list[str],
        query: dict[str, str],
        payload: dict[str, Any],
        org: str | None,
    ) -> tuple[int, Any]:
        def own_job(job_id: str) -> bool:
            return job_id in self.jobs and self.jobs[job_id]["org_id"] == org

        match (method, parts):
            case ("GET", ["admin", "queues"]):
                return 200, {"items": self.queues(), "next_cursor": None}
            case ("GET", ["admin", "queues", name, "dead-letters"]) if name in self.dlq:
                items = [copy.deepcopy(d) for d in self.dlq[name] if _matches(d, query)][
                    : int(query.get("limit", "20"))
                ]
                return 200, {"items": items, "next_cursor": None}
            case ("POST", ["admin", "queues", name, "redrive"]) if name in self.dlq:
                matched = [d["job_id"] for d in self.dlq[name] if _matches(d, payload)]
                if payload.get("dry_run"):
                    return 200, {
                        "redrive_id": None,
                        "status": "completed",
                        "moved": 0,
                        "to_move": len(matched),
                    }
                redrive = Redrive(f"rd-{len(self.redrives) + 1:04d}", name, matched)
                if not matched:
                    redrive.status = "completed"
                self.redrives[redrive.redrive_id] = redrive
                return 202, redrive.view()
            case ("GET", ["admin", "queues", name, "redrive", redrive_id]) if (
                redrive_id in self.redrives and self.redrives[redrive_id].queue == name
            ):
                return 200, self._advance(self.redrives[redrive_id])
            case ("GET", ["jobs"]):
                jobs = sorted(self.jobs.values(), key=lambda j: j["created_at"], reverse=True)
                jobs = [
                    j
                    for j in jobs
                    if j["org_id"] == org
                    and query.get("status") in (None, j["status"])
                    and query.get("type") in (None, j["type"])
                ]
                start = int(query.get("cursor", "0"))
                limit = int(query.get("limit", "20"))
                page = jobs[start : start + limit]
                more = start + limit < len(jobs)
                return 200, {
                    "items": page,
                    "next_cursor": str(start + limit) if more else None,
                }
            case ("GET", ["jobs", job_id]) if own_job(job_id):
                return 200, self.jobs[job_id]
            case ("DELETE", ["jobs", job_id]) if own_job(job_id):
                job = self.jobs[job_id]
                if job["status"] not in ("scheduled", "queued"):
                    return _error(
                        409,
                        "conflict",
                        f"Job {job_id} is {job['status']} and cannot be cancelled.",
                    )
                job["status"] = "cancelled"
                return 200, job
            case ("POST", ["digests", "run"]):
                if payload.get("kind") not in ("daily", "weekly", "monthly"):
                    return _error(
                        400,
                        "validation_error",
                        "kind must be daily, weekly or monthly.",
                    )
                job_id = f"digest:{payload['kind']}:{payload.get('org_id', 'all')}:2025-01-15"
                job = _job(job_id, payload.get("org_id", "acme"), "digest", "queued", 59)
                self.jobs[job_id] = job
                return 202, job
            case ("GET" | "DELETE", ["jobs", job_id]):
                return _error(404, "not_found", f"No job {job_id}.")
            case (_, ["admin", "queues", name, *_]):
                return _error(404, "not_found", f"No queue or redrive {name}.")
        return _error(404, "not_found", "No such route.")

    def _advance(self, redrive: Redrive) -> dict[str, Any]:
        if redrive.status == "running":
            for job_id in redrive.job_ids[redrive.moved : redrive.moved + self.moves_per_poll]:
                self.dlq[redrive.queue] = [d for d in self.dlq[redrive.queue] if d["job_id"] != job_id]
                job = self.jobs[job_id]
                job.update(status="queued", attempts=0, error=None, finished_at=None)
                redrive.moved += 1
            if redrive.moved >= len(redrive.job_ids):
                redrive.status = "completed"
        return redrive.view()


def _matches(letter: dict[str, Any], filters: dict[str, Any]) -> bool:
    for key in ("org_id", "type", "job_id"):
        if filters.get(key) and letter.get(key) != filters[key]:
            return False
    code = filters.get("error_code")
    return not code or letter["last_error"]["code"] == code


def _error(status: int, code: str, message: str) -> tuple[int, Any]:
    return status, {"error": {"code": code, "message": message}}


def _handler_for(fake: FakeHerald) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet test output
            pass

        def _serve(self, method: str) -> None:
            url = urllib.parse.urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            fake.requests.append((method, self.path))
            if not url.path.startswith(fake.prefix + "/"):
                self._send(*_error(404, "not_found", "Outside the API's base path."))
                return
            path = url.path[len(fake.prefix) :]
            if method == "GET" and path in ("/admin", "/admin/"):
                self._send_page()
                return
            query = dict(urllib.parse.parse_qsl(url.query))
            headers = {k.lower(): v for k, v in self.headers.items()}
            self._send(*fake.handle(method, path, query, headers, body))

        def _send(self, status: int, payload: Any) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def _send_page(self) -> None:
            data = DASHBOARD.read_bytes()
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Content-Security-Policy", DASHBOARD_CSP)
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def do_DELETE(self) -> None:
            self._serve("DELETE")

    return Handler


if __name__ == "__main__":
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--port", type=int, default=8765)
    cli.add_argument("--dead-letters", type=int, default=3)
    options = cli.parse_args()
    with FakeHerald(dead_letters=options.dead_letters).running(options.port) as server:
        print(
            f"dashboard: {server.base_url}/admin\ntoken:     {OPERATOR_TOKEN}",
            flush=True,
        )
        threading.Event().wait()
