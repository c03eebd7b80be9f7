"""When a recipient's digest is due, which period it belongs to, and what time it covers.

Why a tick and not one EventBridge rule per time zone: EventBridge cron rules are UTC only, and a
rule per (zone, kind, org override) would be an unbounded set of infrastructure. Instead one rule
fires the scheduler every 15 minutes (``SCHEDULE_EXPRESSION``) and these pure functions decide,
per recipient, whether the local target time fell inside the tick's window. Fifteen minutes
(rather than hourly) because real UTC offsets are whole quarter hours (Asia/Kolkata +05:30,
Asia/Kathmandu +05:45, Australia/Eucla +08:45): an hourly tick would send a Kolkata "07:00"
digest at 07:30 and a Kathmandu one at 07:15. Any target instant ``F`` lies in exactly one
half-open window ``[tick, tick + 15 min)``, so every digest is due at exactly one tick.

Daylight saving time:

* a target local time that does not exist that day (skipped by a spring-forward) fires at the
  first instant whose local wall time is past it, i.e. the moment the clocks jump;
* a target local time that happens twice (fall-back) fires at its first occurrence (fold=0)
  only: the window is measured in real elapsed time from that instant, so the repeated hour is
  an hour later and never due.

That makes ``is_due`` fire once per local day/week/month, but the scheduler can still run twice
for one tick (EventBridge retries an asynchronous invocation, an operator runs a digest by hand).
Idempotency is therefore per period: the sender must record (recipient, kind, ``period_id``)
conditionally before sending, and skip when it already exists.

The scheduler should pass the EventBridge event's ``time`` (the scheduled instant) as
``now_utc``, not the wall clock: a late or retried invocation then evaluates the same tick and
computes the same period id. ``floor_to_tick`` does that for callers that only have a clock.

Time zones come from ``zoneinfo``. The Lambda runtime does not guarantee a system tz database,
so the package must ship the ``tzdata`` wheel (zoneinfo falls back to it automatically).
"""

from __future__ import annotations

import calendar
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal, Protocol, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from chalicelib.observability import logger

Kind = Literal["daily", "weekly", "monthly"]
KINDS: tuple[Kind, ...] = ("daily", "weekly", "monthly")

TICK_MINUTES = 15
# EventBridge (UTC) schedule of the digest scheduler: every quarter hour, see the module docstring.
SCHEDULE_EXPRESSION = "cron(0/15 * * * ? *)"


@dataclass(frozen=True)
class DigestTime:
    """The local wall time a digest of one kind goes out.

    ``weekday`` follows ``date.weekday()`` (Monday is 0) and is required for weekly digests;
    ``day`` (1..31) is required for monthly ones and means the month's last day in months that are
    shorter, so a "31st" digest still goes out in February instead of being skipped.
    """

    kind: Kind
    hour: int
    minute: int = 0
    weekday: int | None = None
    day: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown digest kind {self.kind!r}")
        if not 0 <= self.hour <= 23 or not 0 <= self.minute <= 59:
            raise ValueError(f"invalid time {self.hour:02d}:{self.minute:02d}")
        if self.kind == "weekly" and (self.weekday is None or not 0 <= self.weekday <= 6):
            raise ValueError("a weekly digest needs a weekday 0 (Monday) .. 6 (Sunday)")
        if self.kind == "monthly" and (self.day is None or not 1 <= self.day <= 31):
            raise ValueError("a monthly digest needs a day of the month 1..31")

    def matches(self, local_date: date) -> bool:
        """Whether the digest goes out on this local date at all."""
        if self.kind == "weekly":
            return local_date.weekday() == self.weekday
        if self.kind == "monthly":
            assert self.day is not None  # checked in __post_init__
            last = calendar.monthrange(local_date.year, local_date.month)[1]
            return local_date.day == min(self.day, last)
        return True


DigestTimes = Mapping[Kind, DigestTime]

DEFAULT_TIMES: DigestTimes = {
    "daily": DigestTime("daily", 7),
    "weekly": DigestTime("weekly", 9, weekday=0),
    "monthly": DigestTime("monthly", 8, day=1),
}


def digest_times(overrides: DigestTimes | None = None) -> dict[Kind, DigestTime]:
    """An organization's digest times: the defaults with its overrides laid over them."""
    times = dict(DEFAULT_TIMES)
    for kind, value in (overrides or {}).items():
        if value.kind != kind:
            raise ValueError(f"digest time for {kind!r} has kind {value.kind!r}")
        times[kind] = value
    return times


class RecipientLike(Protocol):
    """What the scheduler needs of a recipient (the contract's recipient record)."""

    @property
    def timezone(self) -> str: ...

    @property
    def digests(self) -> Collection[str]: ...


R = TypeVar("R", bound=RecipientLike)


def zone(tz: str) -> ZoneInfo:
    """The IANA zone, or a ValueError that says what is wrong (the API turns it into a 400)."""
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"unknown time zone {tz!r} (an IANA name such as America/Chicago; "
            "if every zone fails, the tzdata package is missing)"
        ) from exc


def is_valid_timezone(tz: str) -> bool:
    """For request validation: ``timezone`` must be a zone this runtime can resolve."""
    try:
        zone(tz)
    except ValueError:
        return False
    return True


def floor_to_tick(now_utc: datetime, minutes: int = TICK_MINUTES) -> datetime:
    """The scheduled tick a clock reading belongs to, so a late invocation is judged on time."""
    now = _utc(now_utc)
    floored = now.replace(second=0, microsecond=0)
    return floored - timedelta(minutes=floored.minute % minutes)


def local_to_utc(wall: datetime, tz: ZoneInfo) -> datetime:
    """The first instant at which the local clock reads ``wall`` (naive) or later.

    An ambiguous wall time (fall-back) gives its first occurrence; a nonexistent one
    (spring-forward) gives the instant the clocks jump over it. Both the firing time and the
    window start use this rule, so consecutive digests cover adjacent intervals.
    """
    if wall.tzinfo is not None:
        raise ValueError("local_to_utc takes a naive local wall time")
    first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if first.astimezone(tz).replace(tzinfo=None) == wall:
        return first
    # In a gap: fold=0 maps with the offset before the jump (a later instant), fold=1 with the
    # offset after it (an earlier one). The jump lies between; find it to the second.
    low = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    high = first
    if low > high:
        low, high = high, low
    while high - low > timedelta(seconds=1):
        mid = low + (high - low) / 2
        if mid.astimezone(tz).replace(tzinfo=None) >= wall:
            high = mid
        else:
            low = mid
    return high.replace(microsecond=0)


def fire_at(kind: Kind, tz: str, local_date: date, times: DigestTimes | None = None) -> datetime | None:
    """The UTC instant the digest of ``kind`` goes out on ``local_date``, or None if not that day."""
    return _fire_at(_target(kind, times), zone(tz), local_date)


def is_due(
    kind: Kind,
    tz: str,
    now_utc: datetime,
    times: DigestTimes | None = None,
    window_minutes: int = TICK_MINUTES,
) -> bool:
    """Whether the target instant of a matching local day lies in ``(now - window, now]``.

    Equivalently: the recipient's local wall time is in ``[target, target + window)`` on a
    matching day, measured in real time from the first occurrence of the target.
    ``window_minutes`` must equal the scheduler's tick so each digest is due at exactly one tick.
    """
    if not 0 < window_minutes < 24 * 60:
        raise ValueError("window_minutes must be between 1 and 1439")
    now = _utc(now_utc)
    tzinfo = zone(tz)
    target = _target(kind, times)
    window = timedelta(minutes=window_minutes)
    # A target fires no earlier than its local date begins, so only the local dates of the
    # window's two ends can hold it (two when the window crosses local midnight).
    dates = {(now - window).astimezone(tzinfo).date(), now.astimezone(tzinfo).date()}
    for local_date in sorted(dates):
        fire = _fire_at(target, tzinfo, local_date)
        if fire is not None and fire <= now < fire + window:
            return True
    return False


def period_id(kind: Kind, tz: str, now_utc: datetime) -> str:
    """The period a digest sent now belongs to: the recipient's local date at send time.

    daily ``2026-11-26``, weekly ISO week ``2026-W48`` (the ISO year, so 2027-01-01 is
    ``2026-W53``), monthly ``2026-11``. Together with the recipient and kind this is the
    digest's idempotency key.
    """
    local = _utc(now_utc).astimezone(zone(tz)).date()
    if kind == "daily":
        return local.isoformat()
    if kind == "weekly":
        iso = local.isocalendar()
        return f"{iso.year}-W{iso.week:02d}"
    if kind == "monthly":
        return f"{local.year}-{local.month:02d}"
    raise ValueError(f"unknown digest kind {kind!r}")


def period_window(kind: Kind, tz: str, now_utc: datetime) -> tuple[datetime, datetime]:
    """The UTC interval ``[start, now)`` a digest sent now covers.

    The start is the same local wall time one day, seven days or one calendar month earlier
    (the day clamped to the month's length). On a DST-change day a "24 hour" window is therefore
    23 or 25 real hours: that is what makes consecutive digests meet exactly, so no notification
    is counted twice or missed. One known seam: an organization whose custom target time lies in
    a skipped hour (say 02:30 on a spring-forward day) sends at the jump (03:00), and that
    window starts at 03:00 the day before, leaving up to an hour after the previous digest out.
    """
    tzinfo = zone(tz)
    now = _utc(now_utc)
    wall = now.astimezone(tzinfo).replace(tzinfo=None, fold=0)
    if kind == "daily":
        start_wall = wall - timedelta(days=1)
    elif kind == "weekly":
        start_wall = wall - timedelta(days=7)
    elif kind == "monthly":
        year, month = (wall.year, wall.month - 1) if wall.month > 1 else (wall.year - 1, 12)
        start_wall = wall.replace(year=year, month=month, day=min(wall.day, calendar.monthrange(year, month)[1]))
    else:
        raise ValueError(f"unknown digest kind {kind!r}")
    return local_to_utc(start_wall, tzinfo), now


def due_recipients(
    recipients: Iterable[R],
    kind: Kind,
    now_utc: datetime,
    times: DigestTimes | None = None,
    window_minutes: int = TICK_MINUTES,
) -> Iterator[R]:
    """The recipients subscribed to ``kind`` whose digest is due at this tick.

    A recipient with an unknown time zone is logged and skipped rather than failing the whole
    organization's run (the API validates zones, so this means stale data or missing tzdata).
    """
    resolved = digest_times(times)  # a bad override fails the run once, not per recipient
    for recipient in recipients:
        if kind not in recipient.digests:
            continue
        try:
            due = is_due(kind, recipient.timezone, now_utc, resolved, window_minutes)
        except ValueError as exc:
            logger.warning("digest recipient skipped", extra={"kind": kind, "reason": str(exc)})
            continue
        if due:
            yield recipient


def _target(kind: Kind, times: DigestTimes | None) -> DigestTime:
    if kind not in DEFAULT_TIMES:
        raise ValueError(f"unknown digest kind {kind!r}")
    target = (times or {}).get(kind) or DEFAULT_TIMES[kind]
    if target.kind != kind:
        raise ValueError(f"digest time for {kind!r} has kind {target.kind!r}")
    return target


def _fire_at(target: DigestTime, tzinfo: ZoneInfo, local_date: date) -> datetime | None:
    if not target.matches(local_date):
        return None
    return local_to_utc(datetime.combine(local_date, time(target.hour, target.minute)), tzinfo)


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("the clock must be timezone-aware (UTC)")
    return moment.astimezone(UTC)
