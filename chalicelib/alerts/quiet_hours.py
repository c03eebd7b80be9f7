"""Recipients' quiet hours: is a moment inside the window, and when does the window end?

A recipient (the contract's `PUT /v1/recipients/{user_id}`) is the item pk `ORG#{org}`,
sk `RECIPIENT#{user_id}`, with `timezone` (IANA name) and `quiet_hours` `{"start": "22:00",
"end": "07:00"}` (a map, or the same as a JSON string). Windows may cross midnight; a window
whose start equals its end is empty. Times are wall-clock times in the recipient's zone, so
the window follows daylight-saving changes; an end time the clocks skip gives the instant of
the jump.

A recipient that cannot be read as such (no item, no quiet hours, an unknown zone) has no quiet
hours: an alert is never held back because of a record we do not understand.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from chalicelib.ddb import from_item, to_item
from chalicelib.digests.schedule import local_to_utc, zone
from chalicelib.observability import logger

_HHMM = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")


def parse_hhmm(text: object) -> time | None:
    if not isinstance(text, str):
        return None
    match = _HHMM.fullmatch(text)
    return time(int(match.group(1)), int(match.group(2))) if match else None


@dataclass(frozen=True)
class QuietHours:
    start: time
    end: time
    tz: ZoneInfo

    @classmethod
    def parse(cls, timezone: object, window: object) -> QuietHours | None:
        """From a recipient's `timezone` and `quiet_hours`; None when absent or unreadable."""
        if isinstance(window, str):
            try:
                window = json.loads(window)
            except ValueError:
                return None
        if not isinstance(window, dict) or not isinstance(timezone, str):
            return None
        start, end = parse_hhmm(window.get("start")), parse_hhmm(window.get("end"))
        if start is None or end is None:
            return None
        try:
            return cls(start, end, zone(timezone))
        except ValueError:
            return None

    def describe(self) -> dict[str, str]:
        return {"start": self.start.strftime("%H:%M"), "end": self.end.strftime("%H:%M"), "timezone": self.tz.key}

    def contains(self, moment: datetime) -> bool:
        wall = moment.astimezone(self.tz).time().replace(tzinfo=None)
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= wall < self.end
        return wall >= self.start or wall < self.end  # across midnight

    def ends_after(self, moment: datetime) -> datetime | None:
        """The UTC instant the window around `moment` ends, or None when `moment` is outside it."""
        if not self.contains(moment):
            return None
        local = moment.astimezone(self.tz)
        day = local.date()
        if local.time().replace(tzinfo=None) >= self.end:
            day += timedelta(days=1)
        end = local_to_utc(datetime.combine(day, self.end), self.tz)
        if end <= moment:  # only when the end time was skipped by a clock change
            end = local_to_utc(datetime.combine(day + timedelta(days=1), self.end), self.tz)
        return end.astimezone(UTC)


class RecipientQuietHours:
    """Reads a recipient's quiet hours from the table the recipients API writes."""

    def __init__(self, ddb: Any, table: str) -> None:
        self._ddb = ddb
        self._table = table

    def get(self, org_id: str, user_id: str) -> QuietHours | None:
        item = self._ddb.get_item(
            TableName=self._table, Key=to_item({"pk": f"ORG#{org_id}", "sk": f"RECIPIENT#{user_id}"})
        ).get("Item")
        if not item:
            return None
        data = from_item(item)
        if data.get("quiet_hours") is None:
            return None
        found = QuietHours.parse(data.get("timezone"), data.get("quiet_hours"))
        if found is None:
            logger.warning("recipient's quiet hours are unreadable: ignored", extra={"user_id": user_id})
        return found
