"""What a digest says: counts over an organization's job records, rendered as text and HTML.

Pure: the caller queries the job store and passes the records in; nothing here touches AWS.
Templates live in ``chalicelib/templates`` (shipped with the Lambda package because Chalice
copies ``chalicelib`` whole) and are loaded by one Jinja environment, built on first use so that
importing this module costs nothing on a cold start that never renders a digest.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chalicelib.digests.schedule import Kind, zone

if TYPE_CHECKING:
    import jinja2

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
NO_ALERT_TYPE = "other"

# Job states in which an alert is still on its way: it will end completed, dead or cancelled.
_PENDING = frozenset({"scheduled", "queued", "active", "failed"})


@dataclass
class DigestSummary:
    """The numbers of one organization's period; ``window_*`` are UTC, ``[start, end)``.

    ``alerts_pending`` counts alerts not yet final at send time (``failed`` in the contract means
    "an attempt failed, a retry is pending"), so the reader is not told they failed when they may
    still go out, nor left wondering why the numbers do not add up.
    """

    org_id: str
    kind: Kind
    period: str
    window_start: datetime
    window_end: datetime
    alerts_sent: int = 0
    alerts_suppressed: int = 0
    alerts_failed: int = 0
    escalations_fired: int = 0
    by_alert_type: dict[str, int] = field(default_factory=dict)
    alerts_pending: int = 0

    @property
    def total_alerts(self) -> int:
        return self.alerts_sent + self.alerts_suppressed + self.alerts_failed + self.alerts_pending

    @property
    def is_empty(self) -> bool:
        return self.total_alerts == 0 and self.escalations_fired == 0


def summarize(
    jobs: Iterable[Mapping[str, Any]],
    *,
    org_id: str,
    kind: Kind,
    period: str,
    window_start: datetime,
    window_end: datetime,
) -> DigestSummary:
    """Count the organization's alerts and escalations created in ``[window_start, window_end)``.

    The window is applied here, on ``created_at``, so that "in the period" is defined in one
    place and the store query may over-fetch; a record of another organization, or without a
    readable ``created_at``, is never counted (a digest must not leak another tenant's numbers).

    * ``sms`` completed with ``result.suppressed`` -> suppressed; other completed -> sent;
      ``dead`` -> failed; not yet final -> pending; ``cancelled`` -> not counted.
    * ``escalation`` completed (and not marked cancelled/skipped in its result) -> fired.
    * ``alert_type`` is read from ``payload`` or ``meta``; alerts without one count as "other".
    Other job types (email, webhook, digest) are not alerts and are not counted.
    """
    summary = DigestSummary(org_id, kind, period, window_start, window_end)
    by_type: Counter[str] = Counter()
    for job in jobs:
        if job.get("org_id", org_id) != org_id:
            continue
        created = _parse_time(job.get("created_at"))
        if created is None or not window_start <= created < window_end:
            continue
        job_type, status = job.get("type"), job.get("status")
        raw_result = job.get("result")
        result: Mapping[str, Any] = raw_result if isinstance(raw_result, Mapping) else {}
        if job_type == "escalation":
            if status == "completed" and not (result.get("cancelled") or result.get("skipped")):
                summary.escalations_fired += 1
            continue
        if job_type != "sms" or status == "cancelled":
            continue
        if status == "completed":
            if result.get("suppressed") is True:
                summary.alerts_suppressed += 1
            else:
                summary.alerts_sent += 1
        elif status == "dead":
            summary.alerts_failed += 1
        elif status in _PENDING:
            summary.alerts_pending += 1
        else:
            continue
        by_type[_alert_type(job)] += 1
    summary.by_alert_type = dict(sorted(by_type.items(), key=lambda item: (-item[1], item[0])))
    return summary


def render(summary: DigestSummary, recipient_name_or_email: str, *, tz: str | None = None) -> tuple[str, str, str]:
    """``(subject, text, html)`` of the digest email; the HTML part is autoescaped.

    ``tz`` shows the covered interval in the recipient's own zone (UTC when omitted). The subject
    is built here, not in a template, and holds no user data, so it cannot carry a header break.
    """
    shown: tzinfo = zone(tz) if tz else UTC
    counts = (
        f"{summary.alerts_sent} sent, {summary.alerts_failed} failed" if not summary.is_empty else "no notifications"
    )
    subject = f"Herald {summary.kind} digest {summary.period}: {counts}"
    context = {
        "summary": summary,
        "recipient": recipient_name_or_email,
        "window_start": _display(summary.window_start, shown),
        "window_end": _display(summary.window_end, shown),
        "zone_name": tz or "UTC",
    }
    env = _environment()
    text = env.get_template("digest.txt.j2").render(context)
    html = env.get_template("digest.html.j2").render(context)
    return subject, text, html


@cache
def _environment() -> jinja2.Environment:
    """One environment per process: it caches compiled templates across warm invocations."""
    import jinja2  # here, not at the top: the API and most workers never render (cold start)

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2", "html"), default=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _alert_type(job: Mapping[str, Any]) -> str:
    for key in ("payload", "meta"):
        holder = job.get(key)
        if isinstance(holder, Mapping):
            value = holder.get("alert_type")
            if isinstance(value, str) and value:
                return value
    return NO_ALERT_TYPE


def _parse_time(value: object) -> datetime | None:
    """``created_at`` as the store writes it (ISO-8601 with Z) or as a Job carries it; a naive
    time is refused rather than guessed (``clock.parse_iso`` would read it as server-local)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC)
    return None


def _display(moment: datetime, shown: tzinfo) -> str:
    return moment.astimezone(shown).strftime("%Y-%m-%d %H:%M")
