"""What every benchmark shares: figures and their goals, the table, the JSON, AWS call counting.

A figure is Herald's value next to a baseline measured in the same run, and their ratio
(Herald / baseline, always in that order). A goal is a condition on the ratio or on the value,
written as text so the JSON says what was asked: ``"ratio >= 0.8"``, ``"ratio <= 1.5"``,
``"value <= 1010"``; no goal is ``None`` (then ``met`` is ``None`` too).

A benchmark whose work was not fully done raises ``BenchFailure``: it never produces a figure,
so a fast wrong answer cannot look good.
"""

from __future__ import annotations

import io
import json
import math
import operator
import os
import platform
import re
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "latest.json"
FIGURE_KEYS = ("name", "value", "unit", "baseline", "ratio", "goal", "met")
_GOAL = re.compile(r"^\s*(ratio|value)\s*(<=|>=|<|>|==)\s*(-?[0-9.]+(?:e-?[0-9]+)?)\s*$")
_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
    ">": operator.gt,
    "==": operator.eq,
}


class BenchFailure(RuntimeError):
    """The benchmark's work was not fully done (or its baseline's): no figure, non-zero exit."""


def check(condition: object, message: str) -> None:
    """Fail loudly unless `condition` holds."""
    if not condition:
        raise BenchFailure(message)


# --- figures ---------------------------------------------------------------------------------


def ratio_of(value: float | None, baseline: float | None) -> float | None:
    """Herald / baseline; None when either is missing or not finite, the baseline not positive, or
    the value negative (a job that started 0.6 s early has no ratio to one that started late)."""
    if value is None or baseline is None:
        return None
    if not (math.isfinite(value) and math.isfinite(baseline)) or baseline <= 0 or value < 0:
        return None
    return value / baseline


def parse_goal(goal: str) -> tuple[str, Callable[[float, float], bool], float]:
    match = _GOAL.match(goal)
    if not match:
        raise ValueError(f"a goal reads like 'ratio >= 0.8' or 'value <= 1010', not {goal!r}")
    subject, op, bound = match.groups()
    return subject, _OPS[op], float(bound)


def goal_met(goal: str | None, value: float | None, ratio: float | None) -> bool | None:
    """None without a goal; False when the goal's subject is missing (never a silent pass)."""
    if goal is None:
        return None
    subject, compare, bound = parse_goal(goal)
    actual = ratio if subject == "ratio" else value
    if actual is None or not math.isfinite(actual):
        return False
    return bool(compare(actual, bound))


@dataclass
class Figure:
    name: str
    value: float | None
    unit: str
    baseline: float | None
    goal: str | None = None
    note: str = ""  # printed under the table; not part of the JSON
    ratio: float | None = field(default=None, init=False)
    met: bool | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.goal is not None:
            parse_goal(self.goal)  # a malformed goal is a bug in the benchmark: say so at once
        self.ratio = ratio_of(self.value, self.baseline)
        self.met = goal_met(self.goal, self.value, self.ratio)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        return {key: _rounded(data[key]) for key in FIGURE_KEYS}


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return float(f"{value:.4g}") if math.isfinite(value) else None
    return value


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def _met_text(met: bool | None) -> str:
    return "-" if met is None else ("yes" if met else "NO")


def table(figures: Sequence[Figure]) -> str:
    """The figures as an aligned text table (what `make bench` prints at the end)."""
    rows = [("figure", "value", "baseline", "ratio", "goal", "met")]
    for f in figures:
        rows.append(
            (
                f.name,
                f"{fmt(f.value)} {f.unit}",
                f"{fmt(f.baseline)} {f.unit}",
                f"{f.ratio:.2f}x" if f.ratio is not None else "-",
                f.goal or "-",
                _met_text(f.met),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def markdown_table(figures: Sequence[Figure | dict[str, Any]]) -> str:
    """The figures as a Markdown table (for the README)."""
    lines = ["| figure | Herald | baseline | ratio | goal | met |", "|---|---:|---:|---:|---|---|"]
    for f in figures:
        d = f.to_json() if isinstance(f, Figure) else f
        ratio = f"{d['ratio']:.2f}x" if d.get("ratio") is not None else "-"
        lines.append(
            f"| {d['name']} | {fmt(d['value'])} {d['unit']} | {fmt(d['baseline'])} {d['unit']} | {ratio} "
            f"| {d['goal'] or '-'} | {_met_text(d['met'])} |"
        )
    return "\n".join(lines)


def machine() -> str:
    """One line: CPU model and count, memory, OS and the Python running the benchmark."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f", {int(line.split()[1]) / 1024 / 1024:.0f} GiB RAM"
                break
    except (OSError, ValueError):
        pass
    return (
        f"{os.cpu_count()} x {cpu}{mem}, {platform.system()} {platform.release()}, Python {platform.python_version()}"
    )


def results_document(
    figures: Iterable[Figure], *, date: datetime | None = None, host: str | None = None
) -> dict[str, Any]:
    """Exactly `{"date", "machine", "figures": [...]}`."""
    when = (date or datetime.now(UTC)).astimezone(UTC)
    return {
        "date": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": host if host is not None else machine(),
        "figures": [f.to_json() for f in figures],
    }


def write_results(figures: Iterable[Figure], path: Path, **kwargs: Any) -> dict[str, Any]:
    """Write `results_document(...)` to `path` (the run writes RESULTS, bench/results/latest.json); returns it."""
    document = results_document(figures, **kwargs)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(document, indent=2) + "\n")
    tmp.replace(path)
    return document


# --- statistics ------------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0..100), linear between closest ranks; fails on an empty sample."""
    if not values:
        raise BenchFailure("percentile of an empty sample: nothing was measured")
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * p / 100
    low = math.floor(rank)
    high = math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


def wait_until(
    condition: Callable[[], bool], timeout: float, interval: float = 0.2, what: str = "the condition"
) -> float:
    """Poll `condition` until true; returns the seconds waited. BenchFailure at the deadline."""
    started = time.monotonic()
    while True:
        if condition():
            return time.monotonic() - started
        if time.monotonic() - started >= timeout:
            raise BenchFailure(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def say(message: str) -> None:
    print(f"[bench] {message}", file=sys.__stdout__, flush=True)


class DropMetricLines(io.TextIOBase):
    """stdout without Powertools' EMF metric lines (Herald code run in-process prints one per job)."""

    def __init__(self, target: Any) -> None:
        self._target = target
        self._pending = ""
        self._lock = threading.Lock()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        with self._lock:
            self._pending += text
            *lines, self._pending = self._pending.split("\n")
            for line in lines:
                if not line.startswith('{"_aws"'):
                    self._target.write(line + "\n")
        return len(text)

    def flush(self) -> None:
        self._target.flush()


# --- AWS call counting -------------------------------------------------------------------------

# Operations whose request takes ReturnConsumedCapacity, and which kind of capacity they use.
DDB_READS = frozenset({"GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems"})
DDB_WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"})


@dataclass
class Tally:
    calls: Counter[str] = field(default_factory=Counter)  # "service.Operation" -> API calls
    sends: int = 0  # HTTP requests, retries included (each is billed)
    seconds: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    read_units: float = 0.0  # DynamoDB read request units, as the table reported them
    write_units: float = 0.0
    units: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))  # by "dynamodb.Op"

    def total(self, service: str | None = None) -> int:
        return sum(n for key, n in self.calls.items() if service is None or key.split(".")[0] == service)

    def by_service(self) -> dict[str, int]:
        out: Counter[str] = Counter()
        for key, n in self.calls.items():
            out[key.split(".")[0]] += n
        return dict(out)


class CallCounter:
    """Counts AWS API calls made through the boto3 clients (or sessions) it is attached to.

    botocore event hooks: ``before-call`` (one per API call), ``request-created`` (one per HTTP
    attempt, retries included), ``after-call`` (duration, and DynamoDB's ConsumedCapacity,
    which it asks for by adding ``ReturnConsumedCapacity=TOTAL`` to every request that takes
    it). Calls are tallied under the current ``phase``; ``paused()`` stops counting (for the
    benchmark's own checks). Thread-safe: fan-outs call from pools.
    """

    def __init__(self, capacity: bool = True) -> None:
        self.phases: dict[str, Tally] = defaultdict(Tally)
        self.phase = "default"
        self._capacity = capacity
        self._lock = threading.Lock()
        self._paused = 0
        self._id = f"bench-counter-{id(self)}"

    # attaching ------------------------------------------------------------------------------
    def attach(self, target: Any) -> Any:
        """Attach to a boto3 client, a boto3 Session or a botocore Session (future clients)."""
        events = getattr(getattr(target, "meta", None), "events", None)
        if events is None:
            events = target.events if hasattr(target, "events") else target.get_component("event_emitter")
        # "<event>.*.*" and first: before any handler that answers the call itself (botocore's
        # Stubber), which would end the before-call chain.
        events.register_first("provide-client-params.dynamodb.*", self._ask_capacity, unique_id=self._id + "-params")
        events.register_first("before-call.*.*", self._before_call, unique_id=self._id + "-before")
        events.register_first("request-created.*.*", self._request_created, unique_id=self._id + "-send")
        events.register_first("after-call.*.*", self._after_call, unique_id=self._id + "-after")
        return target

    @contextmanager
    def paused(self) -> Iterator[None]:
        with self._lock:
            self._paused += 1
        try:
            yield
        finally:
            with self._lock:
                self._paused -= 1

    @contextmanager
    def in_phase(self, name: str) -> Iterator[Tally]:
        previous, self.phase = self.phase, name
        try:
            yield self.phases[name]
        finally:
            self.phase = previous

    def reset(self) -> None:
        with self._lock:
            self.phases.clear()

    def total(self) -> Tally:
        merged = Tally()
        for tally in self.phases.values():
            merged.calls.update(tally.calls)
            merged.sends += tally.sends
            merged.read_units += tally.read_units
            merged.write_units += tally.write_units
            for key, s in tally.seconds.items():
                merged.seconds[key] += s
            for key, u in tally.units.items():
                merged.units[key] += u
        return merged

    # hooks ------------------------------------------------------------------------------------
    def _ask_capacity(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        if self._capacity and (model.name in DDB_READS or model.name in DDB_WRITES):
            params.setdefault("ReturnConsumedCapacity", "TOTAL")

    @staticmethod
    def _key(event_name: str) -> str:
        # "before-call.dynamodb.GetItem" -> "dynamodb.GetItem"
        return ".".join(event_name.split(".")[1:3])

    def _before_call(self, event_name: str, context: dict[str, Any], **_: Any) -> None:
        if self._paused:
            context["bench_skip"] = True
            return
        context["bench_t0"] = time.perf_counter()
        context["bench_phase"] = self.phase
        with self._lock:
            self.phases[self.phase].calls[self._key(event_name)] += 1

    def _request_created(self, request: Any, **_: Any) -> None:
        context = getattr(request, "context", None) or {}
        if context.get("bench_skip") or "bench_phase" not in context:
            return
        with self._lock:
            self.phases[context["bench_phase"]].sends += 1

    def _after_call(self, event_name: str, parsed: Any, context: dict[str, Any], **_: Any) -> None:
        if context.get("bench_skip") or "bench_t0" not in context:
            return
        key = self._key(event_name)
        elapsed = time.perf_counter() - context["bench_t0"]
        units = 0.0
        consumed = parsed.get("ConsumedCapacity") if isinstance(parsed, dict) else None
        for entry in consumed if isinstance(consumed, list) else [consumed] if consumed else []:
            units += float(entry.get("CapacityUnits") or 0)
        operation = key.split(".")[-1]
        with self._lock:
            tally = self.phases[context["bench_phase"]]
            tally.seconds[key] += elapsed
            if units:
                tally.units[key] += units
            if operation in DDB_READS:
                tally.read_units += units
            elif operation in DDB_WRITES:
                tally.write_units += units
