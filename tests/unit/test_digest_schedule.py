"""Digest timing over a clock: local times, DST days, period ids and covered windows."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from chalicelib.digests.schedule import (
    SCHEDULE_EXPRESSION,
    TICK_MINUTES,
    DigestTime,
    DigestTimes,
    Kind,
    digest_times,
    due_recipients,
    fire_at,
    floor_to_tick,
    is_due,
    is_valid_timezone,
    period_id,
    period_window,
)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def ticks(start: datetime, end: datetime) -> Iterator[datetime]:
    """Every scheduler tick in [start, end), exactly as the EventBridge rule fires them."""
    tick = start
    while tick < end:
        yield tick
        tick += timedelta(minutes=TICK_MINUTES)


def due_ticks(kind: Kind, tz: str, start: datetime, end: datetime, **kwargs: object) -> list[datetime]:
    return [t for t in ticks(start, end) if is_due(kind, tz, t, **kwargs)]  # type: ignore[arg-type]


@dataclass(frozen=True)
class Recipient:
    user_id: str
    timezone: str
    digests: tuple[str, ...] = field(default=("daily",))


def test_schedule_ticks_every_quarter_hour() -> None:
    # Quarter-hour offsets (Kolkata +05:30, Kathmandu +05:45) need a 15-minute tick.
    assert SCHEDULE_EXPRESSION == "cron(0/15 * * * ? *)"
    assert TICK_MINUTES == 15


@pytest.mark.parametrize(
    ("tz", "day", "expected"),
    [
        ("America/New_York", utc(2026, 1, 15), utc(2026, 1, 15, 12, 0)),  # EST, UTC-5
        ("America/New_York", utc(2026, 7, 15), utc(2026, 7, 15, 11, 0)),  # EDT, UTC-4
        ("America/Chicago", utc(2026, 1, 15), utc(2026, 1, 15, 13, 0)),
        ("America/Chicago", utc(2026, 7, 15), utc(2026, 7, 15, 12, 0)),
        ("America/Los_Angeles", utc(2026, 1, 15), utc(2026, 1, 15, 15, 0)),
        ("America/Los_Angeles", utc(2026, 7, 15), utc(2026, 7, 15, 14, 0)),
        ("Pacific/Honolulu", utc(2026, 1, 15), utc(2026, 1, 15, 17, 0)),  # no DST
        ("Pacific/Honolulu", utc(2026, 7, 15), utc(2026, 7, 15, 17, 0)),
        ("Asia/Kolkata", utc(2026, 1, 15), utc(2026, 1, 15, 1, 30)),  # UTC+5:30
        ("Asia/Kathmandu", utc(2026, 1, 15), utc(2026, 1, 15, 1, 15)),  # UTC+5:45
    ],
)
def test_daily_digest_is_due_at_0700_local_on_exactly_one_tick(tz: str, day: datetime, expected: datetime) -> None:
    # GIVEN a recipient in tz, WHEN the scheduler ticks all UTC day, THEN only 07:00 local fires.
    assert due_ticks("daily", tz, day, day + timedelta(days=1)) == [expected]


@pytest.mark.parametrize("tz", ["America/New_York", "America/Chicago", "America/Los_Angeles"])
@pytest.mark.parametrize("dst_day", [date(2026, 3, 8), date(2026, 11, 1)])
def test_us_dst_transition_days_give_exactly_one_daily_digest(tz: str, dst_day: date) -> None:
    # GIVEN the 2026 spring-forward and fall-back days, WHEN every tick around them is walked,
    # THEN each local date gets one digest, at 07:00 local.
    start = datetime.combine(dst_day - timedelta(days=1), datetime.min.time(), UTC)
    due = due_ticks("daily", tz, start, start + timedelta(days=3))
    local = [t.astimezone(ZoneInfo(tz)) for t in due]
    assert [d.date() for d in local] == [dst_day - timedelta(days=1), dst_day, dst_day + timedelta(days=1)]
    assert all((d.hour, d.minute) == (7, 0) for d in local)


def test_new_york_dst_days_fire_at_expected_utc_instants() -> None:
    assert due_ticks("daily", "America/New_York", utc(2026, 3, 8), utc(2026, 3, 9)) == [utc(2026, 3, 8, 11)]
    assert due_ticks("daily", "America/New_York", utc(2026, 11, 1), utc(2026, 11, 2)) == [utc(2026, 11, 1, 12)]


def test_target_in_spring_forward_gap_fires_once_when_clocks_jump() -> None:
    # GIVEN an org that wants its daily digest at 02:30, a time New York skips on 2026-03-08,
    times: DigestTimes = {"daily": DigestTime("daily", 2, 30)}
    # THEN it goes out once, at 03:00 EDT (07:00Z), the first instant after 02:30 local.
    due = due_ticks("daily", "America/New_York", utc(2026, 3, 8), utc(2026, 3, 9), times=times)
    assert due == [utc(2026, 3, 8, 7, 0)]
    assert fire_at("daily", "America/New_York", date(2026, 3, 8), times) == utc(2026, 3, 8, 7, 0)


def test_target_in_half_hour_gap_lord_howe() -> None:
    # Lord Howe moves its clocks by 30 minutes: 02:00 -> 02:30 on 2026-10-04.
    times: DigestTimes = {"daily": DigestTime("daily", 2, 15)}
    assert fire_at("daily", "Australia/Lord_Howe", date(2026, 10, 4), times) == utc(2026, 10, 3, 15, 30)


@pytest.mark.parametrize(("hour", "minute"), [(1, 0), (1, 30), (1, 45)])
def test_repeated_fall_back_hour_fires_only_first_occurrence(hour: int, minute: int) -> None:
    # GIVEN a target inside the hour New York lives twice on 2026-11-01 (01:00-02:00),
    times = {"daily": DigestTime("daily", hour, minute)}
    due = due_ticks("daily", "America/New_York", utc(2026, 11, 1), utc(2026, 11, 2), times=times)
    # THEN only the first (EDT, UTC-4) occurrence is due.
    assert due == [utc(2026, 11, 1, hour + 4, minute)]


@pytest.fixture(scope="module")
def new_york_2026() -> dict[Kind, list[datetime]]:
    """Every due tick of 2026 in New York per kind, walked once for the tests below."""
    return {
        kind: due_ticks(kind, "America/New_York", utc(2026, 1, 1, 5), utc(2027, 1, 1, 5))
        for kind in ("daily", "weekly", "monthly")
    }


def test_whole_year_new_york_one_daily_per_local_date_and_periods_unique(
    new_york_2026: dict[Kind, list[datetime]],
) -> None:
    due = new_york_2026["daily"]
    assert len(due) == 365
    assert len({period_id("daily", "America/New_York", t) for t in due}) == 365


def test_weekly_only_on_monday_0900_local() -> None:
    due = due_ticks("weekly", "America/Chicago", utc(2026, 11, 1), utc(2026, 12, 1))
    assert due == [utc(2026, 11, d, 15) for d in (2, 9, 16, 23, 30)]  # Mondays, 09:00 CST


def test_monthly_only_on_the_first_0800_local() -> None:
    due = due_ticks("monthly", "Asia/Kolkata", utc(2026, 1, 1), utc(2027, 1, 1))
    assert due == [utc(2026, m, 1, 2, 30) for m in range(1, 13)]


def test_monthly_day_31_falls_on_the_last_day_of_short_months() -> None:
    times = {"monthly": DigestTime("monthly", 8, day=31)}
    due = due_ticks("monthly", "UTC", utc(2026, 2, 1), utc(2026, 5, 1), times=times)
    assert due == [utc(2026, 2, 28, 8), utc(2026, 3, 31, 8), utc(2026, 4, 30, 8)]


def test_window_crossing_local_midnight_is_still_due() -> None:
    # GIVEN a 23:55 digest, WHEN the first tick after it is 00:00 the next day, THEN that tick fires.
    times = {"daily": DigestTime("daily", 23, 55)}
    due = due_ticks("daily", "UTC", utc(2026, 5, 1), utc(2026, 5, 3), times=times)
    assert due == [utc(2026, 5, 1, 0, 0), utc(2026, 5, 2, 0, 0)]


def test_org_override_and_defaults() -> None:
    times = digest_times({"daily": DigestTime("daily", 18, 30)})
    assert times["daily"] == DigestTime("daily", 18, 30)
    assert times["weekly"] == DigestTime("weekly", 9, weekday=0)
    assert times["monthly"] == DigestTime("monthly", 8, day=1)
    assert is_due("daily", "America/Chicago", utc(2026, 1, 15, 0, 30), times)
    with pytest.raises(ValueError, match="has kind"):
        digest_times({"daily": DigestTime("weekly", 9, weekday=0)})


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kind": "daily", "hour": 24},
        {"kind": "daily", "hour": 7, "minute": 60},
        {"kind": "weekly", "hour": 9},
        {"kind": "weekly", "hour": 9, "weekday": 7},
        {"kind": "monthly", "hour": 8},
        {"kind": "monthly", "hour": 8, "day": 32},
        {"kind": "hourly", "hour": 8},
    ],
)
def test_invalid_digest_times_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        DigestTime(**kwargs)  # type: ignore[arg-type]


def test_clock_must_be_aware_and_zone_known() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        is_due("daily", "America/Chicago", datetime(2026, 1, 15, 13))
    with pytest.raises(ValueError, match="unknown time zone"):
        is_due("daily", "Mars/Olympus_Mons", utc(2026, 1, 15, 13))
    assert is_valid_timezone("America/Chicago")
    assert not is_valid_timezone("Mars/Olympus_Mons")
    assert not is_valid_timezone("../etc/passwd")
    assert not is_valid_timezone("")


def test_floor_to_tick_judges_a_late_invocation_on_its_tick() -> None:
    assert floor_to_tick(utc(2026, 1, 15, 12, 14, 59)) == utc(2026, 1, 15, 12, 0)
    assert floor_to_tick(utc(2026, 1, 15, 12, 15, 3)) == utc(2026, 1, 15, 12, 15)


@pytest.mark.parametrize(
    ("kind", "tz", "now", "expected"),
    [
        ("daily", "America/Chicago", utc(2026, 11, 26, 13), "2026-11-26"),
        ("daily", "America/Los_Angeles", utc(2026, 11, 27, 2), "2026-11-26"),  # local date, not UTC
        ("daily", "Asia/Kolkata", utc(2026, 11, 25, 20), "2026-11-26"),
        ("weekly", "America/Chicago", utc(2026, 11, 23, 15), "2026-W48"),
        ("weekly", "UTC", utc(2027, 1, 1, 9), "2026-W53"),  # ISO year, not calendar year
        ("weekly", "UTC", utc(2026, 1, 5, 9), "2026-W02"),
        ("monthly", "America/New_York", utc(2026, 11, 1, 12), "2026-11"),
        ("monthly", "America/New_York", utc(2026, 12, 1, 4), "2026-11"),  # still Nov 30 local
    ],
)
def test_period_id(kind: Kind, tz: str, now: datetime, expected: str) -> None:
    assert period_id(kind, tz, now) == expected


def test_period_window_covers_the_preceding_day_week_month() -> None:
    now = utc(2026, 11, 26, 13)
    assert period_window("daily", "America/Chicago", now) == (utc(2026, 11, 25, 13), now)
    assert period_window("weekly", "America/Chicago", now) == (utc(2026, 11, 19, 13), now)
    assert period_window("monthly", "America/Chicago", now) == (utc(2026, 10, 26, 12), now)  # CDT then
    jan = utc(2026, 1, 1, 14)
    assert period_window("monthly", "America/Chicago", jan) == (utc(2025, 12, 1, 14), jan)
    mar31 = utc(2026, 3, 31, 12)
    assert period_window("monthly", "UTC", mar31) == (utc(2026, 2, 28, 12), mar31)  # day clamped


def test_period_window_on_dst_days_is_23_or_25_hours_so_digests_tile() -> None:
    spring = utc(2026, 3, 8, 11)
    start, end = period_window("daily", "America/New_York", spring)
    assert end - start == timedelta(hours=23)
    autumn = utc(2026, 11, 1, 12)
    start, end = period_window("daily", "America/New_York", autumn)
    assert end - start == timedelta(hours=25)


@pytest.mark.parametrize("kind", ["daily", "weekly", "monthly"])
def test_consecutive_windows_meet_exactly_all_year(kind: Kind, new_york_2026: dict[Kind, list[datetime]]) -> None:
    # GIVEN every firing of 2026 in New York, THEN each window starts where the previous ended:
    # no notification is counted twice or missed, DST or not.
    due = new_york_2026[kind]
    assert len(due) == {"daily": 365, "weekly": 52, "monthly": 12}[kind]
    windows = [period_window(kind, "America/New_York", t) for t in due]
    assert all(prev[1] == cur[0] for prev, cur in pairwise(windows))


def test_due_recipients_selects_subscribed_and_due() -> None:
    recipients = [
        Recipient("chi", "America/Chicago", ("daily", "weekly")),
        Recipient("ny", "America/New_York", ("daily",)),
        Recipient("chi-weekly-only", "America/Chicago", ("weekly",)),
        Recipient("broken", "Not/AZone", ("daily",)),
        Recipient("kolkata", "Asia/Kolkata", ("daily",)),
    ]
    now = utc(2026, 1, 15, 13)  # 07:00 in Chicago
    assert [r.user_id for r in due_recipients(recipients, "daily", now)] == ["chi"]
    assert [r.user_id for r in due_recipients(recipients, "daily", utc(2026, 1, 15, 1, 30))] == ["kolkata"]
    # Monday 2026-01-12 09:00 CST
    weekly = [r.user_id for r in due_recipients(recipients, "weekly", utc(2026, 1, 12, 15))]
    assert weekly == ["chi", "chi-weekly-only"]
