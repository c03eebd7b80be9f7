"""Plain-text rendering: tables, ages, times and the redrive progress bar."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO

NONE = "-"


def format_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    right: Sequence[int] = (),
) -> str:
    """Columns padded to their widest cell, two spaces apart; ``right`` columns right-aligned."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = []
    for row in (headers, *rows):
        cells = [cell.rjust(widths[i]) if i in right else cell.ljust(widths[i]) for i, cell in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def format_age(seconds: object) -> str:
    """``45s``, ``3m 20s``, ``2h 05m``, ``3d 04h``; ``-`` when unknown."""
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds < 0:
        return NONE
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600:02d}h"


def format_time(value: object) -> str:
    """``2024-05-01T12:00:03.123Z`` -> ``2024-05-01 12:00:03Z``."""
    if not isinstance(value, str) or not value:
        return NONE
    text = value.replace("T", " ", 1)
    if "." in text and text.endswith("Z"):
        text = text[: text.index(".")] + "Z"
    return text


def cell(value: object) -> str:
    if value is None or value == "":
        return NONE
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def truncate(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def progress_bar(done: int, total: int | None, width: int = 30) -> str:
    """``[###############---------------] 250/500  50%``; an unknown total shows ``?``."""
    if total is None or total < 0:
        return f"[{'-' * width}] {done}/?"
    fraction = 1.0 if total == 0 else min(max(done / total, 0.0), 1.0)
    filled = math.floor(fraction * width)
    percent = math.floor(fraction * 100)
    return f"[{'#' * filled}{'-' * (width - filled)}] {done}/{total} {percent:3d}%"


def _int_or_none(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return int(value)


class ProgressReporter:
    """Shows a redrive's progress on a stream.

    On a TTY one line is redrawn in place (``\\r``); elsewhere (logs, CI) a plain line is written
    when the progress changed and at least ``min_interval`` seconds passed, plus a final line.
    """

    def __init__(
        self,
        stream: TextIO,
        is_tty: bool,
        clock: Callable[[], float],
        min_interval: float = 2.0,
        width: int = 30,
    ) -> None:
        self.stream = stream
        self.is_tty = is_tty
        self.clock = clock
        self.min_interval = min_interval
        self.width = width
        self._start: tuple[float, int] | None = None
        self._last_line: str | None = None
        self._last_key: tuple[object, ...] | None = None
        self._last_time = -math.inf

    def line(self, state: Mapping[str, Any]) -> str:
        moved = _int_or_none(state.get("moved")) or 0
        total = _int_or_none(state.get("to_move"))
        status = str(state.get("status") or "running")
        now = self.clock()
        if self._start is None:
            self._start = (now, moved)
        parts = [progress_bar(moved, total, self.width)]
        elapsed = now - self._start[0]
        rate = (moved - self._start[1]) / elapsed if elapsed > 0 else 0.0
        if rate > 0:
            parts.append(f"{rate:.1f} msg/s")
            if status == "running" and total is not None and total > moved:
                parts.append(f"ETA {format_age((total - moved) / rate)}")
        parts.append(status)
        return "  ".join(parts)

    def update(self, state: Mapping[str, Any]) -> None:
        text = self.line(state)
        if self.is_tty:
            self.stream.write("\r" + text + "\x1b[K")
            self.stream.flush()
            self._last_line = text
            return
        key = (state.get("moved"), state.get("to_move"), state.get("status"))
        now = self.clock()
        if key != self._last_key and now - self._last_time >= self.min_interval:
            self._emit(text, key, now)

    def finish(self, state: Mapping[str, Any]) -> None:
        text = self.line(state)
        if self.is_tty:
            self.stream.write("\r" + text + "\x1b[K\n")
            self.stream.flush()
            return
        key = (state.get("moved"), state.get("to_move"), state.get("status"))
        if key != self._last_key:
            self._emit(text, key, self.clock())

    def _emit(self, text: str, key: tuple[object, ...], now: float) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()
        self._last_key = key
        self._last_time = now
        self._last_line = text
