"""Quiet-hours windows in the recipient's zone: inside or not, and when the window ends.

Pure functions of a clock reading: no AWS, no moto.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from chalicelib.alerts.quiet_hours import QuietHours, parse_hhmm

pytestmark = pytest.mark.unit


def window(start: str, end: str, tz: str = "America/Chicago") -> QuietHours:
    found = QuietHours.parse(tz, {"start": start, "end": end})
    assert found is not None
    return found


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("now", "ends"),
    [
        (utc(2026, 1, 15, 4, 0), utc(2026, 1, 15, 13, 0)),  # 22:00 local: the window starts
        (utc(2026, 1, 15, 5, 59), utc(2026, 1, 15, 13, 0)),  # 23:59 local
        (utc(2026, 1, 15, 6, 0), utc(2026, 1, 15, 13, 0)),  # midnight local
        (utc(2026, 1, 15, 12, 59), utc(2026, 1, 15, 13, 0)),  # 06:59 local
        (utc(2026, 1, 15, 13, 0), None),  # 07:00 local: over
        (utc(2026, 1, 15, 18, 0), None),  # noon local
        (utc(2026, 1, 15, 3, 59), None),  # 21:59 local
    ],
)
def test_a_window_across_midnight(now: datetime, ends: datetime | None) -> None:
    assert window("22:00", "07:00").ends_after(now) == ends


@pytest.mark.parametrize(
    ("now", "ends"),
    [
        (utc(2026, 1, 15, 18, 0), utc(2026, 1, 15, 19, 30)),  # 12:00 local
        (utc(2026, 1, 15, 19, 30), None),
        (utc(2026, 1, 15, 17, 59), None),
    ],
)
def test_a_window_within_one_day(now: datetime, ends: datetime | None) -> None:
    assert window("12:00", "13:30").ends_after(now) == ends


def test_a_window_that_starts_where_it_ends_is_empty() -> None:
    assert window("07:00", "07:00").ends_after(utc(2026, 1, 15, 13, 0)) is None


def test_the_window_follows_daylight_saving_time() -> None:
    """07:00 in Chicago is 13:00 UTC in winter and 12:00 UTC in summer."""
    quiet = window("22:00", "07:00")
    assert quiet.ends_after(utc(2026, 3, 8, 5, 0)) == utc(2026, 3, 8, 12, 0)  # the night clocks spring forward
    assert quiet.ends_after(utc(2026, 11, 1, 5, 0)) == utc(2026, 11, 1, 13, 0)  # the night they fall back


def test_an_end_time_the_clocks_skip_ends_at_the_jump() -> None:
    """02:30 does not exist in Chicago on 2026-03-08: the window ends when 02:00 becomes 03:00."""
    quiet = window("01:00", "02:30")
    assert quiet.ends_after(utc(2026, 3, 8, 7, 30)) == utc(2026, 3, 8, 8, 0)


def test_other_zones() -> None:
    quiet = window("23:00", "06:00", "Europe/Berlin")
    assert quiet.ends_after(utc(2026, 6, 1, 22, 0)) == utc(2026, 6, 2, 4, 0)  # midnight CEST
    assert quiet.describe() == {"start": "23:00", "end": "06:00", "timezone": "Europe/Berlin"}


@pytest.mark.parametrize(
    ("tz", "raw"),
    [
        ("Not/AZone", {"start": "22:00", "end": "07:00"}),
        ("America/Chicago", {"start": "22:00"}),
        ("America/Chicago", {"start": "25:00", "end": "07:00"}),
        ("America/Chicago", {"start": "7:00", "end": "08:00"}),
        ("America/Chicago", "not json"),
        ("America/Chicago", ["22:00", "07:00"]),
        (None, {"start": "22:00", "end": "07:00"}),
    ],
)
def test_unreadable_quiet_hours_are_none(tz: object, raw: object) -> None:
    assert QuietHours.parse(tz, raw) is None


def test_quiet_hours_stored_as_a_json_string_are_read() -> None:
    assert QuietHours.parse("UTC", '{"start": "22:00", "end": "07:00"}') is not None
    assert parse_hhmm("23:59") is not None
    assert parse_hhmm("24:00") is None
