"""POST /v1/digests/run: run one digest kind now (admin: own organization; operator: one or all).

The answer is the fan-out job (type `digest`), readable with GET /v1/jobs/{job_id}: in the
caller's organization, or, for the operator's run over every organization, in the
pseudo-organization `_platform` (`GET /v1/jobs/{job_id}?org_id=_platform`), whose result lists
the per-organization jobs. Running a kind twice in one period sends nobody a second email: the
digest jobs' ids are per (recipient, kind, period), see chalicelib/digests/runner.py.
"""

from __future__ import annotations

from typing import Any, cast

from chalicelib.api.http import Call
from chalicelib.api.schema import F, validate
from chalicelib.clock import utcnow
from chalicelib.digests.runner import start_run
from chalicelib.digests.schedule import KINDS, Kind
from chalicelib.errors import FieldProblem, ValidationError
from chalicelib.services import services


def run_digest(call: Call) -> tuple[int, Any]:
    operator = call.principal.is_operator
    fields = [F("kind", required=True, choices=KINDS)] + ([F("org_id", minimum=1, maximum=256)] if operator else [])
    body = validate(call.body, fields)
    svc = services()
    org_id: str | None = call.principal.org_id
    if operator:
        org_id = body.get("org_id") or call.query.get("org_id") or None
        if org_id is not None and not svc.orgs.exists(org_id):
            raise ValidationError([FieldProblem("org_id", "is not a known organization")])
    job = start_run(svc.jobs, cast(Kind, body["kind"]), org_id, utcnow())
    return 202, job.to_api()
