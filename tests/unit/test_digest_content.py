"""Digest counts from job records, and the email they render to."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from chalicelib.digests.content import DigestSummary, render, summarize

START = datetime(2026, 11, 25, 13, tzinfo=UTC)
END = datetime(2026, 11, 26, 13, tzinfo=UTC)
INSIDE = "2026-11-26T01:02:03.456Z"


def job(job_type: str, status: str, **extra: Any) -> dict[str, Any]:
    record: dict[str, Any] = {"job_id": "j", "org_id": "org-a", "type": job_type, "status": status}
    record["created_at"] = extra.pop("created_at", INSIDE)
    record.update(extra)
    return record


def summary_of(jobs: list[dict[str, Any]]) -> DigestSummary:
    return summarize(jobs, org_id="org-a", kind="daily", period="2026-11-26", window_start=START, window_end=END)


def test_summarize_counts_by_outcome_and_alert_type() -> None:
    jobs = [
        job("sms", "completed", payload={"alert_type": "disk"}, result={"provider_id": "x"}),
        job("sms", "completed", payload={"alert_type": "disk"}),
        job("sms", "completed", meta={"alert_type": "cpu"}, result={"suppressed": True}),
        job("sms", "dead", payload={"alert_type": "cpu"}, error={"code": "invalid_number"}),
        job("sms", "failed", payload={"alert_type": "disk"}),  # retry pending: not final
        job("sms", "completed"),  # no alert_type
        job("sms", "cancelled", payload={"alert_type": "disk"}),
        job("escalation", "completed"),
        job("escalation", "completed", result={"cancelled": True}),
        job("escalation", "cancelled"),
        job("escalation", "queued"),
        job("email", "completed"),
        job("digest", "completed"),
        job("webhook", "dead"),
    ]
    summary = summary_of(jobs)
    assert (summary.alerts_sent, summary.alerts_suppressed, summary.alerts_failed) == (3, 1, 1)
    assert summary.alerts_pending == 1
    assert summary.escalations_fired == 1
    assert summary.by_alert_type == {"disk": 3, "cpu": 2, "other": 1}
    assert list(summary.by_alert_type) == ["disk", "cpu", "other"]  # most frequent first
    assert summary.total_alerts == 6


def test_summarize_counts_only_the_window_and_the_organization() -> None:
    jobs = [
        job("sms", "completed", created_at="2026-11-25T13:00:00.000Z"),  # start: in
        job("sms", "completed", created_at="2026-11-26T13:00:00.000Z"),  # end: out
        job("sms", "completed", created_at="2026-11-25T12:59:59.999Z"),  # before: out
        job("sms", "completed", created_at=datetime(2026, 11, 26, 0, tzinfo=UTC)),  # datetime: in
        job("sms", "completed", created_at="not a time"),
        job("sms", "completed", created_at=None),
        job("sms", "completed", org_id="org-b"),  # another tenant: never counted
    ]
    assert summary_of(jobs).alerts_sent == 2


def test_empty_period() -> None:
    summary = summary_of([])
    assert summary.is_empty
    assert summary.by_alert_type == {}


def test_render_has_both_parts_with_the_counts() -> None:
    summary = summary_of(
        [
            job("sms", "completed", payload={"alert_type": "disk"}),
            job("sms", "completed", payload={"alert_type": "disk"}),
            job("sms", "dead", payload={"alert_type": "cpu"}),
            job("escalation", "completed"),
        ]
    )
    subject, text, html = render(summary, "ops@example.com", tz="America/Chicago")
    assert subject == "Herald daily digest 2026-11-26: 2 sent, 1 failed"
    for part in (text, html):
        assert "ops@example.com" in part
        assert "2026-11-26" in part
        assert "2026-11-25 07:00" in part and "2026-11-26 07:00" in part  # shown in Chicago time
        assert "disk: 2" in part and "cpu: 1" in part
        assert "No notifications this period" not in part
    assert "Alerts sent:        2" in text
    assert "Alerts failed:      1" in text
    assert "Escalations fired:  1" in text
    assert '<td align="right">2</td>' in html
    assert html.lstrip().startswith("<!DOCTYPE html>")


def test_render_escapes_html_but_not_text() -> None:
    summary = summary_of([job("sms", "completed", payload={"alert_type": "<b>x</b>"})])
    _, text, html = render(summary, '<script>alert("hi")</script> & Co')
    assert "<script>" not in html and "<b>x</b>" not in html
    assert "&lt;script&gt;" in html and "&amp; Co" in html and "&lt;b&gt;x&lt;/b&gt;" in html
    assert '<script>alert("hi")</script> & Co' in text and "<b>x</b>: 1" in text
    assert "UTC" in text  # no tz given: the window is shown in UTC


def test_empty_period_still_renders_a_short_digest() -> None:
    subject, text, html = render(summary_of([]), "Dana")
    assert subject == "Herald daily digest 2026-11-26: no notifications"
    assert "No notifications this period." in text
    assert "No notifications this period." in html
    assert "Alerts sent" not in text and "<table" not in html
    assert len(text.splitlines()) < 12
