"""How long finished job records live (the table's TTL, `expires_at`): alerts outlive a month,
because the monthly digest counts them; other jobs go after the configured days."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from chalicelib.jobs.model import Job
from chalicelib.jobs.store import JobStore, Retention
from chalicelib.services import Services

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def finished(svc: Services, job_type: str, outcome: str, store: JobStore | None = None) -> int:
    """Days from now until the finished record expires (now: NOW, or the wall clock for `store`)."""
    now = NOW if store is None else datetime.now(UTC)
    store = store or JobStore(svc.ddb, svc.settings.table_name, clock=lambda: NOW, retention=Retention(7, 30, 35))
    job = Job(
        job_id=f"job_{job_type}_{outcome}",
        org_id="org-a",
        type=job_type,
        status="queued",
        priority="normal",
        created_at=NOW,
        run_at=NOW,
        payload={},
    )
    store.create(job)
    started = store.begin_attempt("org-a", job.job_id, lease_s=60)
    assert started is not None
    done = store.complete(started, {}) if outcome == "completed" else store.kill(started, {"code": "x"})
    assert done is not None
    item = svc.ddb.get_item(
        TableName=svc.settings.table_name, Key={"pk": {"S": f"JOB#org-a#{job.job_id}"}, "sk": {"S": "JOB"}}
    )["Item"]
    return round((int(item["expires_at"]["N"]) - now.timestamp()) / 86400)


@pytest.mark.parametrize(
    ("job_type", "outcome", "days"),
    [
        ("sms", "completed", 35),
        ("escalation", "completed", 35),
        ("sms", "dead", 35),
        ("webhook", "completed", 7),
        ("webhook", "dead", 30),
        ("email", "completed", 7),
    ],
)
def test_finished_records_expire_after_their_kinds_retention(svc, job_type, outcome, days):
    assert finished(svc, job_type, outcome) == days


def test_alert_retention_never_shortens_a_longer_one():
    assert Retention(completed_days=60, dead_days=90, alert_days=35).days("sms", "completed") == 60
    assert Retention(completed_days=60, dead_days=90, alert_days=35).days("sms", "dead") == 90
    assert timedelta(days=Retention().alert_days) > timedelta(days=31)  # a whole month, and its send


@pytest.mark.parametrize(
    ("env", "days"),
    [
        ({}, 35),  # the defaults
        ({"HERALD_ALERT_RETENTION_DAYS": "40"}, 40),  # and not merely Retention's own default
    ],
)
def test_the_settings_give_the_services_store_its_alert_retention(svc, env, days):
    from chalicelib.config import Settings
    from chalicelib.services import build

    config = Settings.from_env(env)
    assert config.alert_retention_days == days
    built = build(config)  # the graph chalicelib.services builds for the app and the workers
    assert built.settings.table_name == svc.settings.table_name
    assert finished(svc, "sms", "completed", store=built.store) == days
    assert finished(svc, "escalation", "dead", store=built.store) == days
    assert finished(svc, "email", "completed", store=built.store) == config.completed_retention_days
